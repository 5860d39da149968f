"""Write environment.yml for conda users from requirements.lock, pin for pin.

The lock file is the single source of truth; tests/test_env_sync.py checks that the
two agree, so run `make lock` (or this script) after changing requirements.in.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def read_pins(path: str | Path) -> dict[str, str]:
    """Map each pinned distribution (lower-case, extras dropped) to its version."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            name = re.sub(r"\[.*\]", "", m.group(1)).lower()
            pins[name] = m.group(2)
    return pins


def render(pins: dict[str, str]) -> str:
    lines = [
        "# Generated from requirements.lock by tools/lock_to_env.py; do not edit by hand.",
        "name: bigsparse",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {name}=={version}" for name, version in sorted(pins.items())]
    lines.append("      - -e .")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(read_pins(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock")))
