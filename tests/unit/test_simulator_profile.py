from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from doorstep.cli import app
from doorstep.simulator.errors import ProfileInvalid, ProfileNotFound
from doorstep.simulator.profile import SHIPPED_PROFILES, load_profile, parse_profile


def _boutique() -> dict[str, Any]:
    return yaml.safe_load(
        (Path(__file__).parents[2] / "src/doorstep/simulator/profiles/boutique.yaml").read_text()
    )


@pytest.mark.parametrize("name", SHIPPED_PROFILES)
def test_shipped_profiles_are_valid(name: str) -> None:
    profile = load_profile(name)

    assert profile.name == name
    assert profile.end > profile.start


def test_large_profile_has_a_peak_season() -> None:
    peaks = load_profile("large").calendar.peaks

    assert [p.name for p in peaks] == ["black-friday", "christmas"]
    assert all(p.order_multiplier > 1 and p.delay_multiplier > 1 for p in peaks)


def test_unknown_key_is_named_with_the_allowed_keys() -> None:
    data = _boutique()
    data["carriers"]["dhl"]["rates"]["dealy"] = 0.1

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == [
        "carriers.dhl.rates.dealy: unknown key; allowed keys here: delay, failed_first_attempt, lost, damaged, "
        "return_to_sender"
    ]


def test_negative_rate_names_the_key_and_range() -> None:
    data = _boutique()
    data["carriers"]["dpd"]["rates"]["lost"] = -0.01

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == ["carriers.dpd.rates.lost: -0.01 is not allowed; allowed range 0 to 1"]


def test_probability_above_one_names_the_key_and_range() -> None:
    data = _boutique()
    data["contacts"]["probability"]["late"] = 1.5

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == ["contacts.probability.late: 1.5 is not allowed; allowed range 0 to 1"]
    assert "contacts.probability.late" in caught.value.detail


def test_end_before_start_is_refused() -> None:
    data = _boutique()
    data["end"] = "2026-07-01"

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == [
        "end (2026-07-01) is not after start (2026-08-03); end must be after start"
    ]


def test_peak_end_before_start_is_refused() -> None:
    data = _boutique()
    data["calendar"]["peaks"][0]["end"] = "2026-09-01"

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == [
        "calendar.peaks.0: end (2026-09-01) is before start (2026-10-01); end must be on or after start"
    ]


def test_lane_with_unknown_carrier_is_refused() -> None:
    data = _boutique()
    data["lanes"]["uk"]["carrier_rates"] = {"fedex": {"delay": 0.3}}

    with pytest.raises(ProfileInvalid) as caught:
        parse_profile(data)

    assert caught.value.problems == ["lanes.uk.carrier_rates.fedex: unknown carrier; allowed: dhl, dpd"]


def test_unknown_profile_name_says_what_exists() -> None:
    with pytest.raises(ProfileNotFound) as caught:
        load_profile("megamart")

    assert "boutique, large" in caught.value.detail


def test_cli_with_an_invalid_profile_writes_nothing(tmp_path: Path) -> None:
    data = _boutique()
    data["carriers"]["dhl"]["rates"]["delay"] = 2
    data["surprise"] = True
    profile = tmp_path / "bad.yaml"
    profile.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["simulate", "--profile", str(profile), "--orders", "10", "--out", str(out)]
    )

    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2
    assert "carriers.dhl.rates.delay: 2 is not allowed; allowed range 0 to 1" in output
    assert "surprise: unknown key" in output
    assert "nothing was written" in output
    assert not out.exists()


def test_cli_live_with_an_invalid_profile_sends_nothing(tmp_path: Path) -> None:
    data = _boutique()
    data["returns"]["refund_slow_rate"] = 3
    profile = tmp_path / "bad.yaml"
    profile.write_text(yaml.safe_dump(data))

    # the URL points nowhere: if anything were sent the command would fail differently (connection refused)
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--profile",
            str(profile),
            "--live",
            "--url",
            "http://127.0.0.1:9",
            "--write-key",
            "wk_x",
        ],
    )

    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "returns.refund_slow_rate: 3 is not allowed; allowed range 0 to 1" in output
    assert "waiting for" not in output
