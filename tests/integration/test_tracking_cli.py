"""The tracking commands: CSV import (all or nothing), ETA training from files, the checks command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from doorstep.cli import app as cli
from doorstep.db.engine import create_db_engine
from doorstep.settings import get_settings
from doorstep.shipments.simulated import generate
from doorstep.shipments.tables import tracking_events


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("DOORSTEP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DOORSTEP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DOORSTEP_ENV", "test")
    get_settings.cache_clear()
    yield {"url": sqlite_url, "var": str(tmp_path / "var")}
    get_settings.cache_clear()


def _scans(url: str) -> int:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(tracking_events)).scalar_one())
    engine.dispose()
    return n


def test_import_csv_is_all_or_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "carrier,tracking_number,occurred_at,status\n"
        "dhl,A1,2026-11-20T08:00:00Z,InTransit\n"
        "dhl,A1,not-a-time,Delivered\n"
    )
    result = CliRunner().invoke(cli, ["shipments", "import-csv", str(bad)])
    assert result.exit_code == 2
    assert "row 3" in result.output and "occurred_at" in result.output
    assert _scans(env["url"]) == 0

    good = tmp_path / "good.csv"
    good.write_text(
        "carrier,tracking_number,occurred_at,status,code\n"
        "dhl,A1,2026-11-20T08:00:00Z,,PU\n"
        "dhl,A1,2026-11-21T08:00:00Z,Delivered,\n"
    )
    result = CliRunner().invoke(cli, ["shipments", "import-csv", str(good)])
    assert result.exit_code == 0, result.output
    assert _scans(env["url"]) == 2
    again = CliRunner().invoke(cli, ["shipments", "import-csv", str(good)])
    assert again.exit_code == 0 and "0 new log entries" in again.output
    assert _scans(env["url"]) == 2


def test_train_eta_from_aftership_files(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "webhooks"
    data.mkdir()
    for s in generate(120, seed=4):
        msg = {
            "slug": s.carrier,
            "tracking_number": s.tracking_number,
            "shipment_type": s.service,
            "order_promised_delivery_date": s.promised_to.isoformat(),  # type: ignore[union-attr]
            "checkpoints": [
                {
                    "checkpoint_time": e.occurred_at.isoformat(),
                    "tag": e.status.value,
                    "subtag": e.subtag,
                    "message": e.message,
                }
                for e in s.timeline
            ],
        }
        (data / f"{s.tracking_number}.json").write_text(json.dumps({"event": "tracking_update", "msg": msg}))
    result = CliRunner().invoke(cli, ["models", "train", "eta", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "mean absolute error (hours)" in result.output and "AUC for lateness" in result.output
    report = json.loads((Path(env["var"]) / "models" / "eta-report.json").read_text())
    assert report["train_shipments"] + report["test_shipments"] <= 120
    assert report["model"]["n"] > 0
    assert (Path(env["var"]) / "models" / "eta.json").exists()
    two = CliRunner().invoke(cli, ["models", "train", "eta", "--data", str(data), "--synthetic", "10"])
    assert two.exit_code == 2 and "choose one source" in two.output


def test_check_command_runs(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["shipments", "check"])
    assert result.exit_code == 0, result.output
    assert "checked 0 active shipments" in result.output


def test_import_aftership_recorded_bodies(tmp_path: Path, env: dict[str, str]) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.support_tracking import aftership_body, aftership_tracking, checkpoint

    old = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)  # far older than the webhook's 24 hours
    tracking = aftership_tracking("IMP1", [checkpoint(old, "InTransit")], order_number="x")
    lines = [aftership_body(tracking, ts=old + timedelta(hours=h), event_id=f"e{h}").decode() for h in (1, 2)]
    good = tmp_path / "webhooks.jsonl"
    good.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["shipments", "import-aftership", str(good)])
    assert result.exit_code == 0, result.output
    assert "2 webhook bodies read, 2 new" in result.output
    assert _scans(env["url"]) == 1  # the same checkpoint twice is one scan
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + '\n{"event": "tracking_update", "event_id": "z", "ts": 1, "msg": {}}\n')
    result = CliRunner().invoke(cli, ["shipments", "import-aftership", str(bad)])
    assert result.exit_code == 2 and "line 2" in result.output and "msg.slug" in result.output
