"""A pipeline process settles its heap after start-up: what start-up allocated (modules, tables, the context)
is frozen, so the loops' full garbage collections scan only what they allocate since."""

from __future__ import annotations

import os
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


def _run(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Runs `code` in a fresh interpreter (a heap of its own) and returns the words it printed."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()


def test_settling_moves_the_start_up_heap_out_of_the_collectors_sight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = _run(PROBE.format(db=tmp_path / "d.db", var=tmp_path))
    before, frozen, after = (int(x) for x in out)
    assert before > 50_000  # the context's start-up heap: what every full collection would walk
    assert frozen >= before * 0.9 and after < before * 0.02


SERVER_PROBE = """
import gc
from fastapi.testclient import TestClient
from doorstep import app as app_module
app = app_module.{factory}()
with TestClient(app) as client:  # runs the lifespan: start-up is over
    assert client.get("/healthz").status_code == 200
    print(gc.get_freeze_count())
"""


def test_a_server_process_settles_its_heap_once_started_and_an_app_made_for_tests_does_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`doorstep serve` builds its app with `create_server_app`: without the settling, every full collection
    walked the whole start-up heap and paused every request of the process (~100 ms under ingest load)."""
    env = {
        **os.environ,
        "DOORSTEP_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
        "DOORSTEP_VAR_DIR": str(tmp_path),
        "DOORSTEP_ENV": "test",
        "DOORSTEP_DEMO": "false",
        "DOORSTEP_IN_PROCESS_WORKER": "false",
    }
    subprocess.run(
        [sys.executable, "-m", "doorstep", "migrate"], env=env, check=True, capture_output=True, timeout=120
    )
    frozen = {
        factory: int(_run(SERVER_PROBE.format(factory=factory), env)[-1])
        for factory in ("create_server_app", "create_app")
    }
    assert frozen["create_server_app"] > 50_000
    assert frozen["create_app"] == 0
