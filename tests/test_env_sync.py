"""environment.yml mirrors requirements.lock pin for pin (tools/lock_to_env.py writes it)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins_from(path, pattern):
    out = {}
    for line in (ROOT / path).read_text().splitlines():
        m = re.match(pattern, line)
        if m:
            out[re.sub(r"\[.*\]", "", m.group(1)).lower()] = m.group(2)
    return out


def test_environment_yml_mirrors_lock():
    lock = pins_from("requirements.lock", r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")
    env = pins_from("environment.yml", r"^\s+- ([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")
    assert lock, "requirements.lock has no pins"
    assert env == lock, {k: (lock.get(k), env.get(k)) for k in set(lock) | set(env) if lock.get(k) != env.get(k)}


def test_every_top_level_requirement_is_pinned():
    lock = pins_from("requirements.lock", r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")
    for line in (ROOT / "requirements.in").read_text().splitlines():
        name = re.split(r"[<>=\[;# ]", line.strip())[0].lower()
        if name:
            assert name in lock, f"{name} from requirements.in is not pinned in requirements.lock"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
