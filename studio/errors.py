"""The studio's own exceptions. Each message is written for the person who will read it: what went wrong and
what to do about it. The web layer shows these messages as they are; anything else is a bug and is logged."""

import re


class StudioError(Exception):
    """Base of every error whose message is safe and useful to show a user."""


class InvalidRequest(StudioError):
    """A request asks for something the studio will not do (a value out of range, an unknown sampler...)."""


class ModelLoadError(StudioError):
    """A model could not be loaded; the model that was serving before (if any) keeps serving."""


class Cancelled(StudioError):
    """The user pressed Stop; nothing was produced."""


class OutOfMemory(StudioError):
    """The device ran out of memory; the studio freed what it could, and a smaller request will work."""


_POSIX_PATH = re.compile(r"(?<![\w.:/])(?:~/|/)(?:[\w.@+\-]+/)+([\w.@+\-]*)")
_WINDOWS_PATH = re.compile(r"\b[A-Za-z]:\\(?:[^\\\s'\"]+\\)*([^\\\s'\"]*)")
_TOKEN = re.compile(r"\b(hf_|sk-|ghp_)[A-Za-z0-9_\-]{16,}")


def redact(message: str) -> str:
    """A message fit for any client: file-system paths cut to their last part, access tokens masked.

    The studio's own messages already name models without their paths; this is the last line of defence for
    text that came from a library.
    """
    message = _POSIX_PATH.sub(lambda m: m.group(1) or "[path]", message)
    message = _WINDOWS_PATH.sub(lambda m: m.group(1) or "[path]", message)
    return _TOKEN.sub(lambda m: f"{m.group(1)}[redacted]", message)
