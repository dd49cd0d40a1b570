"""Build-time helper of the Dockerfile: pin the base image's own builds, then prove our requirements are met.

``python3 image_deps.py freeze torch vllm``   prints ``torch==2.13.0+cu130``-style constraints for what is installed
``python3 image_deps.py check spatial-mllm-serve``   exits 1 listing every requirement that is missing or off-spec

Reads installed metadata only (no pip internals), so it runs on the image's Python and on ours in tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import metadata

from packaging.requirements import Requirement


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def unmet(requirements: Iterable[str], version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """Requirements (extras' ones skipped) that the installed distributions do not satisfy, with what was found."""
    problems = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        found = version_of(requirement.name)
        if found is None:
            problems.append(f"{requirement}: not installed")
        elif not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{requirement}: found {found}")
    return problems


def main(argv: list[str]) -> int:
    command, *names = argv
    if command == "freeze":
        missing = [name for name in names if installed_version(name) is None]
        if missing:
            print(f"not installed in the base image: {', '.join(missing)}", file=sys.stderr)
            return 1
        print("\n".join(f"{name}=={installed_version(name)}" for name in names))
        return 0
    if command == "check":
        problems = [problem for name in names for problem in unmet(metadata.requires(name) or [])]
        for problem in problems:
            print(f"unmet requirement: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
