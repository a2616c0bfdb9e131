from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from doorstep.cli import app

runner = CliRunner()


def test_check_answers_with_the_deciding_rule() -> None:
    edge = runner.invoke(
        app,
        ["returns", "check", "shoes", "--delivered", "2026-10-01T10:00:00", "--at", "2026-11-30T10:00:00"],
    )
    late = runner.invoke(
        app,
        ["returns", "check", "shoes", "--delivered", "2026-10-01T10:00:00", "--at", "2026-11-30T10:00:01"],
    )
    assert edge.exit_code == 0 and "accepted" in edge.output
    assert late.exit_code == 1 and "window 60 days for shoes" in late.output


def test_policy_refuses_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "default_window_days: 30\nreasons: {a: A}\nshop_fault_reasons: [b]\nreturn_shipping_cost: 1\n"
    )
    result = runner.invoke(app, ["returns", "policy", "--file", str(bad)])
    assert result.exit_code == 2
    good = runner.invoke(app, ["returns", "policy"])
    assert good.exit_code == 0 and "fit.too_small" in good.output
