"""Run every bench/*.py and rewrite BENCHMARKS.md (`make bench`).

Each script is standalone (`.venv/bin/python bench/NAME.py`) and prints one Markdown
section to stdout, with the figures it measured and their ratios against a baseline
measured in the same run. This script stamps each section with the machine and date,
keeps it in bench/sections/NAME.md (so `--only NAME` refreshes one section), and
concatenates the sections into BENCHMARKS.md. `book.py` (a fresh-clone `make book`, about
half an hour) runs only with `--only book`; its last section is kept and included.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = HERE / "sections"
ON_REQUEST = {"book", "side_by_side", "compile", "toy_shapes", "shared_programs", "step_ceiling"}  # `--only NAME`; their kept sections still go into BENCHMARKS.md


def machine() -> str:
    import jax

    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    cpu = platform.processor() or platform.machine()
    try:  # the model matters: the float32 matmul peak of our 2-core machines has measured 136 to 452 GFLOP/s
        model = next(l for l in open("/proc/cpuinfo") if l.startswith("model name")).split(":", 1)[1].strip()
        cpu = f"{model}, {cpu}"
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}){mem}; Python {platform.python_version()}; "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--only", action="append", help="run only these scripts (e.g. fit)")
    args = ap.parse_args()
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "run_all.py")
    if args.only:
        scripts = [p for p in scripts if p.stem in args.only]
    else:  # book.py (the whole book twice), side_by_side.py, compile.py, toy_shapes.py, shared_programs.py, step_ceiling.py (~10-15 min each): when asked
        scripts = [p for p in scripts if p.stem not in ON_REQUEST]
    SECTIONS.mkdir(exist_ok=True)
    for script in scripts:
        print(f"[bench] {script.name} ...", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            print(f"[bench] {script.name} failed (exit {r.returncode}); its previous section is kept", file=sys.stderr)
            continue
        (SECTIONS / f"{script.stem}.md").write_text(
            r.stdout.strip() + f"\n\n_Measured {dt.date.today().isoformat()} on {machine()}._\n")
    body = "\n".join(p.read_text() for p in sorted(SECTIONS.glob("*.md")))
    Path(args.out).write_text(
        "# Benchmarks\n\nWritten by `make bench` (`bench/run_all.py`), which runs each `bench/*.py` and keeps its "
        "section in `bench/sections/`.\nEach section names the command that measured it; ratios compare against "
        "a baseline measured in the same run. No test asserts on these times.\n\n" + body)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
