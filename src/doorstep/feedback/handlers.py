"""Feedback use cases: record a survey answer, import reviews. Each owns its transaction and records
FeedbackReceived for every stored answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from doorstep.bus.registry import Bus
from doorstep.db.uow import UnitOfWork
from doorstep.feedback.classifier import classify
from doorstep.feedback.errors import OrderNotFound
from doorstep.feedback.events import FeedbackReceived
from doorstep.feedback.model import RowError, SurveyAnswer, parse_reviews

NAMESPACE = uuid.UUID("6f1d3c52-6a0e-4f0f-9a53-3b6f1f0c7d21")


def register(bus: Bus) -> None:
    """Feedback reacts to no events yet; its writes come from the survey page and imports."""


def record_survey(answer: SurveyAnswer, *, uow: UnitOfWork, now: datetime) -> str:
    """Stores the answer (one per order: answering again replaces it) and returns the feedback id."""
    with uow:
        order = uow.feedback.order(answer.order_id)
        if order is None:
            raise OrderNotFound(f"order {answer.order_id} does not exist")
        external_id = f"survey:{order.id}"
        feedback_id = str(uuid.uuid5(NAMESPACE, external_id))
        topic = classify(answer.comment)
        values = {
            "csat": answer.csat,
            "nps": answer.nps,
            "comment": answer.comment,
            "topic": topic,
            "submitted_at": now,
        }
        if uow.feedback.get_by_external_id(external_id) is None:
            uow.feedback.add(
                {
                    "id": feedback_id,
                    "customer_id": order.customer_id,
                    "order_id": order.id,
                    "kind": "survey",
                    "source": "survey_page",
                    "external_id": external_id,
                    **values,
                }
            )
        else:
            uow.feedback.update(feedback_id, values)
        uow.publish(
            FeedbackReceived(
                occurred_at=now,
                feedback_id=feedback_id,
                customer_id=order.customer_id,
                order_id=order.id,
                kind="survey",
                score=answer.csat,
                topic=topic,
            )
        )
        uow.commit()
    return feedback_id


@dataclass
class ImportReport:
    stored: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


def import_reviews(text: str, *, uow: UnitOfWork, now: datetime, source: str = "csv") -> ImportReport:
    """Stores every good row (classified by topic); reports each bad row by line. Rows already imported
    (same external_id) are skipped, so a file can be imported twice safely."""
    rows, errors = parse_reviews(text, now=now)
    report = ImportReport(errors=list(errors))
    with uow:
        known_orders = uow.feedback.orders_by_external_id(sorted({r.order_external_id for r in rows}))
        existing = uow.feedback.existing_external_ids([r.external_id for r in rows])
        for row in rows:
            order = known_orders.get(row.order_external_id)
            if order is None:
                report.errors.append(
                    RowError(row.line, f"order_id {row.order_external_id!r} is not a known order")
                )
                continue
            if row.external_id in existing:
                report.duplicates += 1
                continue
            feedback_id = str(uuid.uuid5(NAMESPACE, f"review:{row.external_id}"))
            topic = classify(row.comment)
            uow.feedback.add(
                {
                    "id": feedback_id,
                    "customer_id": order.customer_id,
                    "order_id": order.id,
                    "kind": "review",
                    "rating": row.rating,
                    "comment": row.comment,
                    "topic": topic,
                    "source": source,
                    "external_id": row.external_id,
                    "submitted_at": row.submitted_at,
                }
            )
            uow.publish(
                FeedbackReceived(
                    occurred_at=now,
                    feedback_id=feedback_id,
                    customer_id=order.customer_id,
                    order_id=order.id,
                    kind="review",
                    score=row.rating,
                    topic=topic,
                )
            )
            report.stored += 1
        uow.commit()
    report.errors.sort(key=lambda e: e.line)
    return report
