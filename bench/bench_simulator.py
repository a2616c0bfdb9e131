"""Benchmark: write a simulated world of N orders (default 1,000,000, large profile) to files, timed.

    PYTHONPATH=src python -m bench.bench_simulator --orders 1000000

Prints wall time, CPU seconds (this process and its workers), bytes and items written, then deletes the
output (pass --keep to keep it). The issue's target: 1,000,000 orders with all their events in under 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from doorstep.simulator.files import write_files
from doorstep.simulator.profile import load_profile
from doorstep.simulator.world import make_plan


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--profile", default="large")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    # called by `python -m bench` with no arguments: DOORSTEP_BENCH_SIMULATOR_ORDERS may shrink the run
    args = parser.parse_args(argv if argv is not None else [])
    if argv is None and os.environ.get("DOORSTEP_BENCH_SIMULATOR_ORDERS"):
        args.orders = int(os.environ["DOORSTEP_BENCH_SIMULATOR_ORDERS"])

    out = args.out or Path(tempfile.mkdtemp(prefix="doorstep-sim-bench-"))
    plan = make_plan(load_profile(args.profile), orders=args.orders, seed=args.seed)
    load_before = os.getloadavg()[0]
    cpu0, t0 = _cpu_s(), time.perf_counter()
    last = [t0]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 15:
            last[0] = now
            rate = done / (now - t0)
            print(
                f"  {done:>9,} orders  {now - t0:6.1f} s  {rate:,.0f} orders/s  ETA {(plan.orders - done) / rate:5.0f} s",
                flush=True,
            )

    result = write_files(plan, out, processes=args.processes, on_progress=progress)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    items = sum(v for k, v in result.counts.items() if k != "segment_batches")
    figures = {
        "orders": plan.orders,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "processes": args.processes,
        "gb_written": round(result.bytes_written / 1e9, 2),
        "items": items,
        "items_per_s": round(items / wall),
        "orders_per_s": round(plan.orders / wall),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    print(
        f"simulator: {plan.orders:,} orders ({args.profile}) in {wall:.1f} s wall, {cpu:.1f} s CPU, "
        f"{args.processes} processes; {result.bytes_written / 1e9:.2f} GB, {items:,} items "
        f"({items / wall:,.0f}/s); counts {result.counts}; load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return figures


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
