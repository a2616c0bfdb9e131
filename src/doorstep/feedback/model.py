"""Feedback rules: what a valid survey answer and review row are. Pure: no I/O, `now` passed in."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from doorstep.clock import ensure_utc
from doorstep.feedback.errors import InvalidAnswer

REVIEW_COLUMNS = ("order_id", "rating", "comment", "submitted_at", "external_id")
MAX_COMMENT_CHARS = 4000
MAX_IMPORT_ROWS = 100_000


@dataclass(frozen=True)
class SurveyAnswer:
    order_id: str
    csat: int
    nps: int | None
    comment: str | None

    @classmethod
    def parse(
        cls, *, order_id: str, csat: str | int | None, nps: str | int | None, comment: str | None
    ) -> SurveyAnswer:
        def number(value: str | int | None, name: str, low: int, high: int, *, required: bool) -> int | None:
            if value is None or (isinstance(value, str) and not value.strip()):
                if required:
                    raise InvalidAnswer(f"{name}: choose a score from {low} to {high}")
                return None
            try:
                n = int(value)
            except ValueError:
                raise InvalidAnswer(f"{name}: {value!r} is not a whole number from {low} to {high}") from None
            if not low <= n <= high:
                raise InvalidAnswer(f"{name}: {n} is outside {low} to {high}")
            return n

        text = (comment or "").strip()[:MAX_COMMENT_CHARS] or None
        csat_n = number(csat, "satisfaction", 1, 5, required=True)
        assert csat_n is not None
        return cls(order_id, csat_n, number(nps, "recommendation", 0, 10, required=False), text)


@dataclass(frozen=True)
class ReviewRow:
    line: int
    order_external_id: str
    rating: int
    comment: str | None
    submitted_at: datetime
    external_id: str


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


def parse_reviews(text: str, *, now: datetime) -> tuple[list[ReviewRow], list[RowError]]:
    """Good rows and, for each bad one, its line number (the header is line 1) and what is wrong."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REVIEW_COLUMNS if c not in header]
    if missing:
        return [], [
            RowError(1, f"missing column(s) {', '.join(missing)}; expected {', '.join(REVIEW_COLUMNS)}")
        ]
    reader.fieldnames = header
    good: list[ReviewRow] = []
    bad: list[RowError] = []
    seen: set[str] = set()
    for i, raw in enumerate(reader):
        line = reader.line_num
        if i >= MAX_IMPORT_ROWS:
            bad.append(RowError(line, f"more than {MAX_IMPORT_ROWS} rows: split the file"))
            break
        row = {k: (v or "").strip() for k, v in raw.items() if k}
        problems = []
        if not row.get("order_id"):
            problems.append("order_id is empty")
        if not row.get("external_id"):
            problems.append("external_id is empty")
        elif row["external_id"] in seen:
            problems.append(f"external_id {row['external_id']!r} appears twice in the file")
        rating = None
        try:
            rating = int(row.get("rating", ""))
            if not 1 <= rating <= 5:
                problems.append(f"rating {rating} is outside 1 to 5")
        except ValueError:
            problems.append(f"rating {row.get('rating')!r} is not a whole number from 1 to 5")
        submitted = None
        try:
            submitted = ensure_utc(datetime.fromisoformat(row.get("submitted_at", "").replace("Z", "+00:00")))
            if submitted > now:
                problems.append(f"submitted_at {row['submitted_at']} is in the future")
        except ValueError:
            problems.append(f"submitted_at {row.get('submitted_at')!r} is not an ISO 8601 date-time")
        if problems:
            bad.append(RowError(line, "; ".join(problems)))
            continue
        assert rating is not None and submitted is not None
        seen.add(row["external_id"])
        good.append(
            ReviewRow(
                line,
                row["order_id"],
                rating,
                (row.get("comment") or "")[:MAX_COMMENT_CHARS] or None,
                submitted,
                row["external_id"],
            )
        )
    return good, bad
