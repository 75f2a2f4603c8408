"""Installs that reproduce: the README's two commands install the versions the suite last passed with.

Every requirements file takes ``constraints.txt``; it pins every package they name, within their ranges, and
never torch (the CPU wheel of CI and a user's CUDA build must both stay possible). The suite runs on exactly
those versions, so a release made last night cannot change what a fresh machine installs.
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements-mcp.txt")
TORCH_ONLY = {"torch", "triton", "sympy", "mpmath", "networkx"}
"""torch and the packages only it needs: left to whichever torch build the machine takes."""


def requirements(file: str) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / file).read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not an exact pin"
            found[canonicalize_name(name)] = pinned
    return found


@pytest.mark.parametrize("file", REQUIREMENT_FILES)
def test_each_requirements_file_installs_within_the_constraints(file: str) -> None:
    lines = [line.strip() for line in (ROOT / file).read_text().splitlines()]
    included = [line.split(maxsplit=1)[1] for line in lines if line.startswith("-r ")]
    assert "-c constraints.txt" in lines or all(
        "-c constraints.txt" in (ROOT / other).read_text().splitlines() for other in included
    ), f"{file} installs without constraints.txt"


def test_every_named_package_is_pinned_within_its_range_and_torch_is_not() -> None:
    pinned = pins()
    assert not TORCH_ONLY & set(pinned), "torch's build is the machine's choice"
    for file in REQUIREMENT_FILES:
        for requirement in requirements(file):
            name = canonicalize_name(requirement.name)
            if name in TORCH_ONLY:
                continue
            assert name in pinned, f"{requirement.name} ({file}) is not in constraints.txt"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"constraints.txt pins {requirement.name}=={pinned[name]}, outside {file}'s {requirement.specifier}"
            )


def test_the_suite_runs_on_the_pinned_versions() -> None:
    """What the suite passes with is what constraints.txt says (after `.ci/lock`, install again to re-test)."""
    pinned = pins()
    for file in REQUIREMENT_FILES:
        for requirement in requirements(file):
            name = canonicalize_name(requirement.name)
            if name in TORCH_ONLY:
                continue
            try:
                installed = version(requirement.name)
            except PackageNotFoundError:
                pytest.fail(f"{requirement.name} is not installed: pip install -r {file}")
            assert installed == pinned[name], f"{requirement.name} {installed} is installed, {pinned[name]} pinned"
