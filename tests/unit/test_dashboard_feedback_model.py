"""Feedback rules and the topic classifier (pure, fast)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from doorstep.feedback.classifier import TOPICS, classify, evaluate, load_examples, rule_topic, split
from doorstep.feedback.errors import InvalidAnswer
from doorstep.feedback.model import SurveyAnswer, parse_reviews

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_classifier_is_measured_on_a_held_out_set_it_never_trained_on() -> None:
    train, test = split(load_examples())
    assert not {t for t, _ in train} & {t for t, _ in test}
    assert {label for _, label in test} == set(TOPICS)
    result = evaluate()
    assert result["held_out"] == len(test) and result["train"] == len(train)
    # combining rules and model beats either alone, and is right on most held-out comments
    assert result["combined_accuracy"] > max(result["rules_accuracy"], result["model_accuracy"])
    assert result["combined_accuracy"] >= 0.7


@pytest.mark.parametrize(
    ("comment", "topic"),
    [
        ("late but handled well", "delivery"),
        ("still waiting for my refund", "returns"),
        ("the shoes are a size small", "product"),
        ("the agent was rude", "service"),
        ("far too expensive", "price"),
    ],
)
def test_clear_comments_get_their_topic(comment: str, topic: str) -> None:
    assert classify(comment) == topic


def test_ambiguous_comment_is_left_to_the_model_and_empty_has_no_topic() -> None:
    assert rule_topic("the courier charged me a fee") is None  # delivery and price words both appear
    assert classify("the courier charged me a fee") in TOPICS
    assert classify("   ") is None and classify(None) is None


def test_survey_answer_bounds() -> None:
    answer = SurveyAnswer.parse(order_id="o1", csat="4", nps="", comment="  late but fine ")
    assert (answer.csat, answer.nps, answer.comment) == (4, None, "late but fine")
    with pytest.raises(InvalidAnswer, match="satisfaction"):
        SurveyAnswer.parse(order_id="o1", csat=None, nps=None, comment=None)
    with pytest.raises(InvalidAnswer, match="11 is outside 0 to 10"):
        SurveyAnswer.parse(order_id="o1", csat=3, nps="11", comment=None)


def test_review_rows_are_reported_by_line() -> None:
    text = (
        "order_id,rating,comment,submitted_at,external_id\n"
        "#1,5,great,2026-11-20T10:00:00Z,r1\n"
        "#2,7,nope,2026-11-20T10:00:00Z,r2\n"
        ",3,,yesterday,r3\n"
        '#4,2,"late, and rude",2026-11-21T10:00:00+01:00,r4\n'
        "#5,1,future,2027-01-01T00:00:00Z,r5\n"
        "#6,4,dup,2026-11-20T10:00:00Z,r1\n"
    )
    good, bad = parse_reviews(text, now=NOW)
    assert [(r.line, r.order_external_id, r.rating) for r in good] == [(2, "#1", 5), (5, "#4", 2)]
    assert good[1].comment == "late, and rude" and good[1].submitted_at == datetime(
        2026, 11, 21, 9, tzinfo=UTC
    )
    assert [e.line for e in bad] == [3, 4, 6, 7]
    assert "rating 7 is outside 1 to 5" in bad[0].message
    assert "order_id is empty" in bad[1].message and "not an ISO 8601" in bad[1].message
    assert "in the future" in bad[2].message and "appears twice" in bad[3].message


def test_missing_columns_are_one_error_on_the_header() -> None:
    good, bad = parse_reviews("order,stars\n#1,5\n", now=NOW)
    assert good == [] and bad[0].line == 1 and "external_id" in bad[0].message
