"""`python -m bench [name ...]`: runs every bench/bench_*.py `main()`, or only the named ones
(`python -m bench ingest` runs bench/bench_ingest.py). Benchmarks print their figures; they never assert."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = available()
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        print("available:", ", ".join(names) or "none")
        return 0
    chosen = argv or names
    unknown = [name for name in chosen if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"==> bench {name}", flush=True)
        started = time.monotonic()
        sys.argv = [f"bench_{name}"]  # each benchmark parses its own options; run it with its defaults
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"==> bench {name} took {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
