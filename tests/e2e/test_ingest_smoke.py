from __future__ import annotations

import base64
from pathlib import Path

from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.factories import segment_event, write_key
from tests.helpers import running_app

from doorstep.clock import FixedClock
from doorstep.ingest.tables import event_log


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_batch_is_appended_once_per_message_id(tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    with running_app(make_settings(tmp_path, database_url), clock) as app:
        key = write_key(app.ctx.engine, now=clock.now())
        events = [segment_event(), segment_event("page", name="Home")]

        first = app.client.post("/v1/batch", json={"batch": events}, headers=_auth(key))
        again = app.client.post("/v1/batch", json={"batch": events}, headers=_auth(key))

        assert first.status_code == 200, first.text
        assert first.json() == {"success": True, "accepted": 2, "duplicates": 0}
        assert again.json() == {"success": True, "accepted": 2, "duplicates": 2}
        with app.ctx.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(event_log)).scalar_one() == 2


def test_unknown_write_key_is_refused_with_problem_json(
    tmp_path: Path, sqlite_url: str, clock: FixedClock
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        response = app.client.post("/v1/track", json=segment_event(), headers=_auth("wk_nope"))

        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert "write key" in response.json()["detail"]
