from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from doorstep.cli import app


def test_simulate_writes_every_file_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "world"

    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--profile",
            "boutique",
            "--orders",
            "120",
            "--seed",
            "3",
            "--out",
            str(out),
            "--processes",
            "1",
        ],
    )

    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["orders"] == 120 and manifest["seed"] == 3 and manifest["profile"] == "boutique"
    for filename in manifest["files"].values():
        assert (out / filename).exists(), filename
    assert manifest["counts"]["truth_orders"] == 120
    assert manifest["counts"]["segment_events"] > 120 * 5
    assert len((out / "truth_orders.csv").read_text().splitlines()) == 121


def test_simulate_needs_a_destination(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--orders", "10"])

    assert result.exit_code == 2
    assert "--out DIR" in result.output


def test_end_before_start_on_the_command_line_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "world"

    result = CliRunner().invoke(
        app, ["simulate", "--orders", "10", "--start", "2026-05-01", "--end", "2026-04-01", "--out", str(out)]
    )

    assert result.exit_code == 2
    assert "must be after --start" in " ".join(result.output.split())
    assert not out.exists()
