"""The assistant's understanding: held-out accuracy, out-of-scope refusal, entities, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doorstep.cli import app as cli_app
from doorstep.conversations.nlu.classifier import (
    DATA_DIR,
    INTENTS,
    MODEL_PATH,
    TEST_CSV,
    TRAIN_CSV,
    IntentClassifier,
    get_classifier,
    load,
    normalise,
    read_labelled,
    version_path,
)
from doorstep.conversations.nlu.entities import EntityRules, extract
from doorstep.conversations.nlu.evaluation import evaluate_rows

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday 23 November 2026


def test_held_out_set_meets_the_targets() -> None:
    report = evaluate_rows(get_classifier(), read_labelled(TEST_CSV))
    assert report.in_scope_total >= 120 and report.out_of_scope_total >= 40
    assert report.in_scope_accuracy >= 0.95, report.errors
    assert report.out_of_scope_refused >= 0.90, report.errors


def test_held_out_sentences_are_not_in_the_training_set() -> None:
    def key(t: str) -> str:
        return " ".join("".join(c for c in t.lower() if c.isalnum() or c.isspace()).split())

    train = {key(t) for t, _ in read_labelled(TRAIN_CSV)}
    assert [t for t, _ in read_labelled(TEST_CSV) if key(t) in train] == []


TEST_DE_FR_CSV = DATA_DIR / "test_de_fr.csv"


def _key(t: str) -> str:
    return " ".join("".join(c for c in t.lower() if c.isalnum() or c.isspace()).split())


def test_german_and_french_held_out_set() -> None:
    # Written before the German/French phrases were trained, never trained on. Measured when added:
    # 98.2% in scope (55/56), 100% out of scope refused (8/8); the floors leave a margin for retraining.
    report = evaluate_rows(get_classifier(), read_labelled(TEST_DE_FR_CSV))
    assert report.in_scope_total >= 50 and report.out_of_scope_total >= 8
    assert report.in_scope_accuracy >= 0.92, report.errors
    assert report.out_of_scope_refused >= 0.85, report.errors


def test_german_and_french_held_out_sentences_are_not_in_the_training_set() -> None:
    train = {_key(t) for t, _ in read_labelled(TRAIN_CSV)}
    rows = read_labelled(TEST_DE_FR_CSV)
    assert [t for t, _ in rows if _key(t) in train] == []
    assert {i for _, i in rows} == set(INTENTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # messages seen live from the demo shop's German customers: a check only, not training data
        ("Hallo, kann ich die Lieferadresse für ML-498732-100097 noch ändern?", "change_delivery_address"),
        (
            "Zustellung von ML-498732-100112 fehlgeschlagen, wie kann ich einen neuen Termin bekommen?",
            "reschedule_delivery",
        ),
        (
            "Hallo, mein Paket zu Bestellung ML-498732-100069 ist noch nicht angekommen. Gibt es Neuigkeiten?",
            "track_order",
        ),
        ("Können Sie mir bitte die Rechnung für Bestellung ML-498732-100033 schicken?", "invoice_request"),
        ("Ich habe in Bestellung ML-498732-100033 den falschen Artikel bekommen.", "report_problem"),
        (
            "artikel aus ML-498732-100201 ist kaputt angekommen, ich möchte Ersatz oder mein Geld zurück",
            "report_problem",
        ),
        (
            "Benachrichtigungskarte für ML-498732-100150 im Briefkasten. Kann das Paket in eine Packstation?",
            "change_delivery_address",
        ),
        ("Fällt das Leinenhemd klein aus?", "out_of_scope"),
        ("Hallo, liefern Sie auch in die Schweiz?", "out_of_scope"),
        ("Do you have gift wrapping?", "out_of_scope"),
    ],
)
def test_live_demo_messages(text: str, expected: str) -> None:
    assert _key(text) not in {_key(t) for t, _ in read_labelled(TRAIN_CSV)}
    assert get_classifier().predict(text).intent == expected


def test_every_intent_is_trained_and_tested() -> None:
    assert {i for _, i in read_labelled(TRAIN_CSV)} == set(INTENTS)
    assert {i for _, i in read_labelled(TEST_CSV)} == set(INTENTS)


def test_shipped_model_matches_the_installed_scikit_learn() -> None:
    import joblib
    import sklearn

    assert joblib.load(MODEL_PATH)["sklearn"] == sklearn.__version__, "run `doorstep assistant train`"
    assert version_path(MODEL_PATH).read_text().strip() == sklearn.__version__, (
        "run `doorstep assistant train`"
    )


def test_a_model_from_another_scikit_learn_is_retrained_not_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import joblib

    model = tmp_path / "model.joblib"
    IntentClassifier.train(read_labelled(TRAIN_CSV)).save(model)
    version_path(model).write_text("0.1.0\n")

    def must_not_open(*args: object, **kwargs: object) -> object:
        raise AssertionError("a pickle written by another scikit-learn version was opened")

    monkeypatch.setattr(joblib, "load", must_not_open)
    assert load(model).predict("where is my parcel").intent == "track_order"


def test_low_confidence_is_refused_not_guessed() -> None:
    classifier = get_classifier()
    assert classifier.predict("").intent == "out_of_scope"
    assert classifier.predict("   ").confidence == 0.0
    assert classifier.predict("what's the capital of peru").intent == "out_of_scope"


def test_identifiers_are_masked_before_classification() -> None:
    assert normalise("Where is #DS-10293, mail maya@example.com") == "where is ordernum , mail emailaddr"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("where is order #DS-10293?", {"order_number": "DS-10293"}),
        ("order 48213377 please", {"order_number": "48213377"}),
        ("my email is Maya@Example.COM", {"email": "maya@example.com"}),
        ("call me on +44 7700 900123", {"phone": "+447700900123"}),
        ("text 07700 900123", {"phone": "+447700900123"}),
        ("postcode sw1a 1aa", {"postcode": "SW1A 1AA"}),
        ("it's EC1A1BB", {"postcode": "EC1A 1BB"}),
        ("zip: 10115", {"postcode": "10115"}),
    ],
)
def test_identifiers(text: str, expected: dict[str, str]) -> None:
    found = extract(text, now=NOW)
    assert {k: found[k] for k in expected} == expected
    assert set(found) & {"order_number", "email", "phone", "postcode"} == set(expected)


@pytest.mark.parametrize(
    ("text", "day", "start", "end"),
    [
        ("next Tuesday afternoon", "2026-11-24", "12:00", "17:00"),
        ("tomorrow morning", "2026-11-24", "08:00", "12:00"),
        ("on the 12th", "2026-12-12", "00:00", "23:59"),
        ("on the 30th", "2026-11-30", "00:00", "23:59"),
        ("friday evening", "2026-11-27", "17:00", "21:00"),
        ("on monday", "2026-11-30", "00:00", "23:59"),  # said on a Monday: the coming one
        ("3rd of december at 2pm", "2026-12-03", "14:00", "16:00"),
        ("12 jan", "2027-01-12", "00:00", "23:59"),
        ("in 3 days", "2026-11-26", "00:00", "23:59"),
        ("today", "2026-11-23", "00:00", "23:59"),
        ("25/12", "2026-12-25", "00:00", "23:59"),
    ],
)
def test_dates_and_times_resolve_against_now(text: str, day: str, start: str, end: str) -> None:
    found = extract(text, now=NOW)
    assert found["date"] == day
    assert found["window_from"][11:16] == start
    assert found["window_to"][11:16] == end


def test_no_date_no_date() -> None:
    assert "date" not in extract("where is my parcel", now=NOW)


def test_order_patterns_are_configurable() -> None:
    rules = EntityRules(order_patterns=(r"\bSHOP(?P<number>\d{6})\b",))
    assert extract("it's SHOP123456", now=NOW, rules=rules)["order_number"] == "123456"
    assert "order_number" not in extract("it's DS-10293", now=NOW, rules=rules)


def test_classify_command_writes_json_lines() -> None:
    result = CliRunner().invoke(
        cli_app,
        ["assistant", "classify"],
        input="where is order DS-10293?\n\nwrite me a poem about the sea\n",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["intent"] for line in lines] == ["track_order", "out_of_scope"]
    assert lines[0]["entities"] == {"order_number": "DS-10293"}
    assert set(lines[0]) == {"text", "intent", "confidence", "entities"}


def test_eval_command_prints_per_intent_scores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "few.csv"
    data.write_text(
        "text,intent\nwhere is my parcel,track_order\ntell me a joke,out_of_scope\n", encoding="utf-8"
    )
    result = CliRunner().invoke(cli_app, ["assistant", "eval", str(data)])
    assert result.exit_code == 0, result.output
    assert "track_order" in result.stdout and "out-of-scope refused" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\nhi,greeting\n", encoding="utf-8")
    assert CliRunner().invoke(cli_app, ["assistant", "eval", str(bad)]).exit_code == 2
