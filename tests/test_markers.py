"""A quick run: ``pytest -m "not browser"`` leaves out every test that drives Chromium, and needs no Playwright."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_PLAYWRIGHT = (
    "import sys; sys.modules['playwright'] = None; import pytest; "  # `import playwright` now raises ImportError
    "sys.exit(pytest.main(['-m', 'not browser', '--collect-only', '-q', '-p', 'no:cacheprovider', 'tests']))"
)


def test_a_quick_run_collects_everything_but_the_browser_tests_without_playwright() -> None:
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_PLAYWRIGHT], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    collected = [line for line in run.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/test_service.py::") for line in collected)
    assert any(line.startswith("tests/test_load.py::") for line in collected), "its other tests still run"
    assert not [line for line in collected if "_browser.py::" in line or "test_browser.py::" in line]
    assert not [line for line in collected if "test_stop_interrupts_only_the_job_of_the_user" in line]
