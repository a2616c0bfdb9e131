"""One sender draining N queued order_confirmed messages that carry an order (three signed links each, as the
journey queues them), on the benchmark's SQLite setup; prints messages/s and CPU a message, and with --profile
the cProfile listing (and writes the stats file).

    PYTHONPATH=src:. .venv/bin/python -m bench.profile_notify_sender 3000 --profile /tmp/sender.prof
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import bench.bench_notifications as b
from doorstep.notifications.services import Sender


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int, nargs="?", default=3000)
    parser.add_argument("--profile", help="write cProfile stats here and print the top of the listing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ctx, recorder = b._context(Path(tmp) / "sender.db")
        ids = b._customers(ctx, args.n)
        now = datetime.now(UTC)
        b.queue_confirmations(ctx, ids, now=now)
        sender = Sender(ctx, name="profile")
        sender.send_due(now=datetime.now(UTC), limit=1)  # warm up: templates compiled, keys derived
        profiler = cProfile.Profile() if args.profile else None
        start, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        while sender.send_due(now=datetime.now(UTC)):
            pass
        if profiler is not None:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        n = len(recorder.handed)
        print(
            f"{n} handed, {n / elapsed:.0f} messages/s, {cpu / n * 1000:.3f} ms CPU a message"
            f"{' (under cProfile)' if profiler else ''}"
        )
        if profiler is not None:
            profiler.dump_stats(args.profile)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        sender.pool.shutdown(wait=False)
        ctx.engine.dispose()
        ctx.read_engine.dispose()


if __name__ == "__main__":
    main()
