"""ETA model and report: metrics on known small sets, the exported trees, the time split, the baseline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from doorstep.shipments import eta
from doorstep.shipments.model import Shipment, Status, TrackingEvent
from doorstep.shipments.simulated import generate

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def test_auc_on_known_sets() -> None:
    assert eta.auc_score([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert eta.auc_score([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # one of four positive/negative pairs is ranked wrong: 3/4
    assert eta.auc_score([True, False, True, False], [0.9, 0.8, 0.3, 0.1]) == 0.75
    assert eta.auc_score([True, False], [0.5, 0.5]) == 0.5  # ties count half
    assert eta.auc_score([True, True], [0.1, 0.2]) is None  # undefined without both classes


def _delivered(i: int, *, transit_h: float, promised_h: float, dispatched: datetime) -> Shipment:
    s = Shipment.create(
        id=f"s{i}",
        carrier="dhl",
        tracking_number=f"T{i}",
        now=dispatched - timedelta(hours=2),
        promised_to=dispatched + timedelta(hours=promised_h),
    )
    for at, status in (
        (dispatched, Status.IN_TRANSIT),
        (dispatched + timedelta(hours=transit_h), Status.DELIVERED),
    ):
        s.record(TrackingEvent(carrier="dhl", tracking_number=f"T{i}", occurred_at=at, status=status), now=at)
    return s


def test_evaluate_computes_mae_coverage_and_auc_exactly() -> None:
    # two shipments, one sample each (at the dispatch scan), with fixed predicted quantiles per shipment
    on_time = _delivered(1, transit_h=15, promised_h=24, dispatched=T0)  # (10, 20, 30): inside, error 5
    late = _delivered(2, transit_h=40, promised_h=24, dispatched=T0)  # (10, 30, 38): outside, error 10
    samples = eta.samples_of([on_time, late])
    assert [(s.remaining_h, s.is_late) for s in samples] == [(15.0, False), (40.0, True)]
    scores = {"s1": (10.0, 20.0, 30.0), "s2": (10.0, 30.0, 38.0)}
    metrics = eta.evaluate(samples, lambda s, at: scores[s.id])
    assert metrics.mae_h == 7.5  # (|20-15| + |30-40|) / 2
    assert metrics.coverage == 0.5
    assert metrics.auc == 1.0  # the late one got the higher late probability
    assert metrics.n == 2


def test_late_probability_reads_the_quantiles() -> None:
    q = (10.0, 20.0, 30.0)
    assert eta.late_probability(q, 20.0) == pytest.approx(0.5)
    assert eta.late_probability(q, 10.0) == pytest.approx(0.9)
    assert eta.late_probability(q, 30.0) == pytest.approx(0.1)
    assert eta.late_probability(q, -100.0) == 1.0
    assert eta.late_probability(q, 1000.0) == 0.0
    values = [eta.late_probability(q, h) for h in range(-30, 70)]
    assert values == sorted(values, reverse=True)


def test_time_split_has_no_leakage() -> None:
    history = generate(200, seed=3)
    train, test, cutoff = eta.time_split(history)
    assert all(s.delivered_at < cutoff for s in train)  # type: ignore[operator]
    assert all(s.dispatched_at >= cutoff for s in test)  # type: ignore[operator]
    assert not {s.id for s in train} & {s.id for s in test}
    with pytest.raises(ValueError, match="need at least 20"):
        eta.time_split(history[:5])


def test_baseline_uses_lane_then_carrier_then_overall() -> None:
    history = [
        _delivered(i, transit_h=10 + i, promised_h=48, dispatched=T0 + timedelta(hours=i)) for i in range(9)
    ]
    baseline = eta.Baseline.fit(history)
    assert baseline.is_trained
    assert baseline.carriers["dhl"] == (10.8, 14.0, 17.2)
    s = history[0]
    q10, q50, q90 = baseline.quantiles(s, s.dispatched_at + timedelta(hours=4))  # type: ignore[operator]
    assert (q10, q50, q90) == pytest.approx((6.8, 10.0, 13.2))
    prior = eta.Baseline()
    assert prior.predict(s, T0).source == "prior"
    assert prior.predict(s, T0).confidence == 0.0  # unmeasured: no claim


def test_trained_model_exports_to_trees_that_match_sklearn_and_round_trips(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(size=300)
    regressor = GradientBoostingRegressor(
        loss="quantile", alpha=0.5, n_estimators=20, max_depth=3, random_state=0
    ).fit(x, y)
    exported = eta.export_regressor(regressor)
    expected = regressor.predict(x[:25])
    assert [exported.predict(list(row)) for row in x[:25]] == pytest.approx(
        list(expected), rel=1e-9, abs=1e-9
    )
    assert [exported.predict_walk(list(row)) for row in x[:25]] == pytest.approx(list(expected), rel=1e-9)

    result = eta.train(generate(400, seed=5), now=T0, n_estimators=15)
    report = result.report
    assert report["train_shipments"] + report["test_shipments"] <= 400
    assert report["model"]["n"] == report["baseline"]["n"] == report["test_samples"] > 0
    assert 0.0 <= report["model"]["coverage"] <= 1.0
    assert result.model.confidence == report["model"]["coverage"]
    path = eta.save_model(result.model, tmp_path)
    assert path == tmp_path / "models" / "eta.json"
    loaded = eta.load_predictor(tmp_path)
    assert loaded.source == "model"
    s = generate(1, seed=99)[0]
    at = s.timeline[1].occurred_at
    assert loaded.predict(s, at) == result.model.predict(s, at)
    prediction = loaded.predict(s, at)
    assert prediction.window_from <= prediction.expected_at <= prediction.window_to
    data = json.loads(path.read_text())
    data["features"] = ["something", "else"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="another feature set"):
        eta.load_predictor(tmp_path)


def test_untrained_predictor_falls_back_to_priors(tmp_path: Path) -> None:
    predictor = eta.load_predictor(tmp_path)
    assert predictor.model is None and predictor.source == "prior"
