"""`doorstep customers show/erase` against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import make_settings
from tests.factories import write_key
from tests.helpers import running_app
from tests.support_ingest import basic, count, drain_log
from typer.testing import CliRunner

from doorstep.clock import FixedClock
from doorstep.customers.tables import customers
from doorstep.db.engine import create_db_engine
from doorstep.settings import get_settings


def test_show_explains_and_erase_removes(
    tmp_path: Path, sqlite_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_app(make_settings(tmp_path, sqlite_url), clock) as app:
        key = write_key(app.ctx.engine, now=clock.now())
        app.client.post(
            "/v1/batch",
            headers=basic(key),
            json={
                "batch": [
                    {"type": "page", "anonymousId": "a1", "messageId": "m1"},
                    {
                        "type": "identify",
                        "anonymousId": "a1",
                        "userId": "maya",
                        "traits": {"email": "maya@shop.io"},
                        "messageId": "m2",
                    },
                ]
            },
        )
        drain_log(app)
    monkeypatch.setenv("DOORSTEP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DOORSTEP_ENV", "test")
    get_settings.cache_clear()
    from doorstep.cli import app as cli

    runner = CliRunner()
    try:
        shown = runner.invoke(cli, ["customers", "show", "maya@shop.io"], terminal_width=200)
        missing = runner.invoke(cli, ["customers", "show", "nobody@shop.io"])
        erased = runner.invoke(cli, ["customers", "erase", "maya", "--yes"])
    finally:
        get_settings.cache_clear()

    assert shown.exit_code == 0, shown.output
    assert "maya@shop.io" in shown.output and "user_id:maya with anonymous_id:a1" in shown.output
    assert missing.exit_code == 1
    assert erased.exit_code == 0, erased.output
    engine = create_db_engine(sqlite_url)
    try:
        assert count(engine, customers) == 0
    finally:
        engine.dispose()
