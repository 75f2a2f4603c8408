"""Start ``app.py`` as a ZeroGPU Space starts it, on this CPU-only machine (run by tests/test_spaces.py).

Usage: ``python tests/zerogpu_harness.py [app.py flags]``, with ``SPACES_ZERO_GPU=true``,
``SPACES_ZERO_DEVICE_API_URL`` (the test's stand-in for ZeroGPU's device API) and ``SPACE_ID`` set.

``spaces`` emulates CUDA on top of a CUDA build of torch while its ZeroGPU mode loads; with the CPU build installed
here that layer cannot load (it reads ``torch.version.cuda``, which is None). ``spaces`` supports a process without
torch (its torch layer turns into no-ops: nothing to pack, move or patch), so it is shown none while it is imported.
Everything else is real: ``app.py`` runs unchanged, the handlers are wrapped by the real ``spaces.GPU``, which asks the
device API for a GPU with the estimated duration, forks a worker, runs the handler there and streams its outputs
back, and closes it on Stop. The studio itself imports the real torch afterwards and runs on the CPU.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"

if __name__ == "__main__":
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError while spaces loads
    import spaces  # noqa: F401

    del sys.modules["torch"]
    sys.path.insert(0, str(APP.parent))
    sys.argv = [str(APP), *sys.argv[1:]]
    runpy.run_path(str(APP), run_name="__main__")
