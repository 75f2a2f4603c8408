"""Whether a Hugging Face Hub model can be had: from the local cache, or by downloading it now.

The micro-model fallback (``studio/startup.py``) hangs on this answer, so it must hold whatever HTTP library a
release of ``huggingface_hub`` is built on (``httpx`` in 1.x, ``httpx2`` in 2.x, ``requests`` before). The one
thing the library documents for "the Hub answered" is ``HfHubHTTPError``; everything else raised while asking
(no network, a DNS failure, a proxy that refuses, a timeout, a TLS error, offline mode, or an exception type no
release has raised yet) means the Hub was not reached. Nothing here imports torch.
"""

from __future__ import annotations

import logging

from huggingface_hub import HfApi, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError

log = logging.getLogger(__name__)

HUB_CHECK_TIMEOUT_S = 10.0
"""How long the check waits for the Hub's answer before it counts the Hub as unreachable."""


def hub_model_unavailable(repo_id: str, offline: bool, timeout_s: float = HUB_CHECK_TIMEOUT_S) -> str | None:
    """Why the Hub model ``repo_id`` can be neither found in the local cache nor downloaded; None when it can.

    Only a Hub that cannot be reached (or offline mode) counts, and a Hub that answers with a server error (5xx):
    the model cannot be downloaded now either way. A gated or unknown repository (the Hub answered 401, 403 or 404)
    is the user's to fix, and loading it explains how. The check asks the Hub for the model's card, which is small.
    """
    if isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str):
        return None
    if offline:
        return "is not in the local Hugging Face cache and the studio is offline (--offline or HF_HUB_OFFLINE=1)"
    try:
        HfApi().model_info(repo_id, timeout=timeout_s)
    except HfHubHTTPError as error:  # the Hub answered
        status = error.response.status_code if error.response is not None else None
        if status is not None and status >= 500:
            log.info("the Hub answered %s for %s: %s", status, repo_id, error)
            return (
                "is not in the local Hugging Face cache and cannot be downloaded "
                f"(the Hugging Face Hub answered with a server error, HTTP {status})"
            )
        log.info("the Hub answered about %s: %s; loading it will explain", repo_id, error)
    # Not an answer from the Hub: whatever the HTTP library of the day raises for "not reached" (its own types
    # change between releases), the model cannot be downloaded now, and the studio must still start.
    except Exception as error:
        log.info("the Hub is not reachable for %s: %s: %s", repo_id, type(error).__name__, error)
        return (
            "is not in the local Hugging Face cache and cannot be downloaded "
            f"(the Hugging Face Hub is unreachable: {type(error).__name__})"
        )
    return None
