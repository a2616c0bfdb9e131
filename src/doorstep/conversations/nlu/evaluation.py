"""Scores of the intent model on a labelled set (used by `doorstep assistant eval`, the tests and the bench)."""

from __future__ import annotations

from dataclasses import dataclass

from doorstep.conversations.nlu.classifier import OUT_OF_SCOPE, IntentClassifier


@dataclass(frozen=True)
class EvalReport:
    per_intent: dict[str, dict[str, float]]
    in_scope_accuracy: float  # share of in-scope utterances given their right intent
    in_scope_refused: float  # share of in-scope utterances wrongly treated as out of scope
    out_of_scope_refused: float  # share of out-of-scope utterances refused (not guessed)
    in_scope_total: int
    out_of_scope_total: int
    macro_f1: float
    errors: list[tuple[str, str, str]]  # (text, expected, predicted)


def evaluate_rows(classifier: IntentClassifier, rows: list[tuple[str, str]]) -> EvalReport:
    predicted = [p.intent for p in classifier.predict_many([t for t, _ in rows])]
    expected = [i for _, i in rows]
    labels = sorted(set(expected) | set(predicted))
    per_intent: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for e, p in zip(expected, predicted, strict=True) if e == p == label)
        fp = sum(1 for e, p in zip(expected, predicted, strict=True) if p == label and e != label)
        fn = sum(1 for e, p in zip(expected, predicted, strict=True) if e == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    pairs = list(zip(expected, predicted, strict=True))
    in_scope = [(e, p) for e, p in pairs if e != OUT_OF_SCOPE]
    oos = [(e, p) for e, p in pairs if e == OUT_OF_SCOPE]
    supported = [m["f1"] for m in per_intent.values() if m["support"]]
    return EvalReport(
        per_intent=per_intent,
        in_scope_accuracy=sum(e == p for e, p in in_scope) / len(in_scope) if in_scope else 0.0,
        in_scope_refused=sum(p == OUT_OF_SCOPE for _, p in in_scope) / len(in_scope) if in_scope else 0.0,
        out_of_scope_refused=sum(p == OUT_OF_SCOPE for _, p in oos) / len(oos) if oos else 0.0,
        in_scope_total=len(in_scope),
        out_of_scope_total=len(oos),
        macro_f1=sum(supported) / len(supported) if supported else 0.0,
        errors=[(t, e, p) for (t, e), p in zip(rows, predicted, strict=True) if e != p],
    )
