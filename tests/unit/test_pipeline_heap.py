"""A pipeline process settles its heap after start-up: what start-up allocated (modules, tables, the context)
is frozen, so the loops' full garbage collections scan only what they allocate since."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from doorstep.app import build_context, settle_heap
from doorstep.settings import Settings
ctx = build_context(Settings(database_url="sqlite:///{db}", var_dir="{var}"))
before = len(gc.get_objects())
settle_heap()
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_settling_moves_the_start_up_heap_out_of_the_collectors_sight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(db=tmp_path / "d.db", var=tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    before, frozen, after = (int(x) for x in out)
    assert before > 50_000  # the context's start-up heap: what every full collection would walk
    assert frozen >= before * 0.9 and after < before * 0.02
