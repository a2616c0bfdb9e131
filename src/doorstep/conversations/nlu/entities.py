"""Entities in a customer's message: order numbers (the shop's own formats), email, phone, postcode, and
dates or times in natural language resolved against an injected `now`.

>>> extract("move order #DS-10293 to next Tuesday afternoon", now=datetime(2026, 11, 23, 10, tzinfo=UTC))
{'order_number': 'DS-10293', 'date': '2026-12-01', 'part_of_day': 'afternoon', 'window_from': ..., ...}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import phonenumbers

# The shop's order numbers: an optional '#', up to three letters, an optional dash, 4 to 10 digits.
DEFAULT_ORDER_PATTERNS = (r"#?(?P<number>[A-Z]{0,3}-?\d{4,10})",)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A phone number is written with a leading + or 00, or as a national number starting with 0 (10+ digits).
PHONE_CANDIDATE = re.compile(r"(?:\+|00)\d[\d ()-]{7,17}\d|\b0\d[\d -]{8,13}\d\b")
UK_POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?) ?(\d[A-Z]{2})\b", re.IGNORECASE)
KEYED_POSTCODE = re.compile(
    r"\b(?:post ?code|zip(?: ?code)?|plz)\s*(?:is|:)?\s*([A-Z0-9][A-Z0-9 -]{2,9}[A-Z0-9])\b", re.IGNORECASE
)

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAY_SHORT = {
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "wed": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
MONTH_INDEX = (
    {m: i + 1 for i, m in enumerate(MONTHS)} | {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
)
# Parts of the day as local delivery windows (start hour, end hour).
PARTS_OF_DAY = {
    "morning": (8, 12),
    "afternoon": (12, 17),
    "evening": (17, 21),
    "midday": (11, 14),
    "lunchtime": (11, 14),
    "noon": (11, 14),
    "night": (18, 22),
}

_DAY_WORD = r"(?:mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)(?:day|nesday|urday|sday)?"
RELATIVE = re.compile(r"\b(today|tonight|tomorrow|tmrw|tmr|day after tomorrow)\b", re.IGNORECASE)
WEEKDAY_RE = re.compile(rf"\b(next|this|on|coming)?\s*({_DAY_WORD})\b", re.IGNORECASE)
ORDINAL_DAY = re.compile(r"\b(?:on\s+)?the\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:\s+of\s+([a-z]+))?", re.IGNORECASE)
DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3,9})\b", re.IGNORECASE)
MONTH_DAY = re.compile(r"\b([a-z]{3,9})\s+(\d{1,2})(?:st|nd|rd|th)?\b", re.IGNORECASE)
NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})(?:[/.](\d{2,4}))?\b")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
IN_DAYS = re.compile(r"\bin\s+(\d{1,2}|a|one|two|three|four|five)\s+(day|days|week|weeks)\b", re.IGNORECASE)
NEXT_WEEK = re.compile(r"\bnext week\b", re.IGNORECASE)
WEEKEND = re.compile(r"\b(?:this|next|the)?\s*weekend\b", re.IGNORECASE)
PART_RE = re.compile(r"\b(morning|afternoon|evening|midday|lunchtime|noon|night|tonight)\b", re.IGNORECASE)
CLOCK_RE = re.compile(
    r"\b(?:at|after|before|from|around|by)?\s*(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b|\b(\d{1,2}):(\d{2})\b",
    re.IGNORECASE,
)
SMALL_NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


@dataclass(frozen=True)
class EntityRules:
    """What the shop's identifiers look like; order patterns must have a group named `number` (or none)."""

    order_patterns: Sequence[str] = DEFAULT_ORDER_PATTERNS
    default_region: str = "GB"  # for phone numbers written without a country code

    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.order_patterns]


_COMPILED: dict[tuple[str, ...], list[re.Pattern[str]]] = {}


def _order_regexes(rules: EntityRules) -> list[re.Pattern[str]]:
    key = tuple(rules.order_patterns)
    if key not in _COMPILED:
        _COMPILED[key] = rules.compiled()
    return _COMPILED[key]


def extract(
    text: str, *, now: datetime, rules: EntityRules | None = None, tz: tzinfo = UTC
) -> dict[str, Any]:
    """All entities found in `text`; dates resolve against `now` in the customer's time zone `tz`."""
    rules = rules or EntityRules()
    found: dict[str, Any] = {}
    rest = text
    email = EMAIL.search(rest)
    if email:
        found["email"] = email.group(0).lower()
        rest = rest.replace(email.group(0), " ")
    phone = _phone(rest, rules.default_region)
    if phone:
        found["phone"], raw = phone
        rest = rest.replace(raw, " ")
    postcode = _postcode(rest)
    if postcode:
        found["postcode"], raw = postcode
        rest = rest.replace(raw, " ")
    number = _order_number(rest, rules)
    if number:
        found["order_number"], raw = number
        rest = rest.replace(raw, " ")
    found.update(extract_when(rest, now=now, tz=tz))
    return found


def _phone(text: str, region: str) -> tuple[str, str] | None:
    for match in PHONE_CANDIDATE.finditer(text):
        raw = match.group(0)
        candidate = "+" + raw[2:] if raw.startswith("00") else raw
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), raw
    return None


def _postcode(text: str) -> tuple[str, str] | None:
    keyed = KEYED_POSTCODE.search(text)
    if keyed:
        return normalise_postcode(keyed.group(1)), keyed.group(0)
    uk = UK_POSTCODE.search(text)
    if uk and any(c.isdigit() for c in uk.group(0)):
        return f"{uk.group(1).upper()} {uk.group(2).upper()}", uk.group(0)
    return None


def normalise_postcode(value: str) -> str:
    """Upper case, single inner spaces: 'sw1a1aa' and 'SW1A 1AA' compare equal after `compact_postcode`."""
    return " ".join(value.upper().split())


def compact_postcode(value: str) -> str:
    return re.sub(r"[\s-]", "", value.upper())


def _order_number(text: str, rules: EntityRules) -> tuple[str, str] | None:
    for regex in _order_regexes(rules):
        for match in regex.finditer(text):
            value = match.group("number") if "number" in regex.groupindex else match.group(0)
            # A bare 4-digit number next to a clock or date word is a time or a year, not an order.
            if re.fullmatch(r"\d{4}", value) and re.search(r"\b(19|20)\d\d\b", value):
                continue
            return value.lstrip("#"), match.group(0)
    return None


def extract_when(text: str, *, now: datetime, tz: tzinfo = UTC) -> dict[str, Any]:
    """A day and a part of the day or clock time: {'date', 'part_of_day', 'window_from', 'window_to'}."""
    local_now = now.astimezone(tz)
    today = local_now.date()
    day = _resolve_day(text, today)
    part = None
    window: tuple[time, time] | None = None
    part_match = PART_RE.search(text)
    if part_match:
        part = part_match.group(1).lower()
        if part == "tonight":
            part = "evening"
        start_h, end_h = PARTS_OF_DAY[part]
        window = (time(start_h), time(end_h))
    clock = _clock(text)
    if clock is not None:
        window = (clock, (datetime.combine(today, clock) + timedelta(hours=2)).time())
    if day is None and window is None:
        return {}
    if day is None:
        day = today if window and window[1] > local_now.time() else today + timedelta(days=1)
    out: dict[str, Any] = {"date": day.isoformat()}
    if part:
        out["part_of_day"] = part
    start, end = window or (time(0), time(23, 59, 59))
    out["window_from"] = datetime.combine(day, start, tzinfo=tz).astimezone(UTC).isoformat()
    out["window_to"] = datetime.combine(day, end, tzinfo=tz).astimezone(UTC).isoformat()
    return out


def _clock(text: str) -> time | None:
    for match in CLOCK_RE.finditer(text):
        if match.group(1):
            hour = int(match.group(1)) % 12 + (12 if match.group(3).lower() == "pm" else 0)
            minute = int(match.group(2) or 0)
        else:
            hour, minute = int(match.group(4)), int(match.group(5))
        if hour < 24 and minute < 60:
            return time(hour, minute)
    return None


def _weekday_index(word: str) -> int | None:
    word = word.lower()
    for i, name in enumerate(WEEKDAYS):
        if word == name:
            return i
    return WEEKDAY_SHORT.get(word[:5].rstrip("day")) if word[:3] in {k[:3] for k in WEEKDAY_SHORT} else None


def _month(word: str) -> int | None:
    word = word.lower()
    return MONTH_INDEX.get(word) or MONTH_INDEX.get(word[:3]) if word[:3] in MONTH_INDEX else None


def _resolve_day(text: str, today: date) -> date | None:
    rel = RELATIVE.search(text)
    if rel:
        word = rel.group(1).lower()
        if word in ("today", "tonight"):
            return today
        if word == "day after tomorrow":
            return today + timedelta(days=2)
        return today + timedelta(days=1)
    iso = ISO_DATE.search(text)
    if iso:
        try:
            return date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        except ValueError:
            pass
    weekday = WEEKDAY_RE.search(text)
    if weekday:
        index = _weekday_index(weekday.group(2))
        if index is not None:
            ahead = (index - today.weekday()) % 7
            if ahead == 0:
                ahead = 7  # "on Monday" said on a Monday means the coming one; "next X" is the coming X too
            return today + timedelta(days=ahead)
    for regex, day_group, month_group in ((DAY_MONTH, 1, 2), (MONTH_DAY, 2, 1)):
        for match in regex.finditer(text):
            month = _month(match.group(month_group))
            if month:
                resolved = _future_date(today, month, int(match.group(day_group)))
                if resolved:
                    return resolved
    ordinal = ORDINAL_DAY.search(text)
    if ordinal:
        month = _month(ordinal.group(2)) if ordinal.group(2) else None
        day_of_month = int(ordinal.group(1))
        if month:
            return _future_date(today, month, day_of_month)
        candidate = _safe_date(today.year, today.month, day_of_month)
        if candidate is None or candidate < today:
            next_month = today.month % 12 + 1
            candidate = _safe_date(today.year + (today.month == 12), next_month, day_of_month)
        return candidate
    numeric = NUMERIC_DATE.search(text)
    if numeric:
        # Day first, as written outside the US; a year is optional.
        d, m = int(numeric.group(1)), int(numeric.group(2))
        if numeric.group(3):
            y = int(numeric.group(3))
            return _safe_date(y + 2000 if y < 100 else y, m, d)
        return _future_date(today, m, d)
    in_days = IN_DAYS.search(text)
    if in_days:
        n_raw = in_days.group(1).lower()
        n = SMALL_NUMBERS.get(n_raw) or int(n_raw)
        return today + timedelta(days=n * (7 if in_days.group(2).lower().startswith("week") else 1))
    if NEXT_WEEK.search(text):
        return today + timedelta(days=7 - today.weekday())  # Monday of next week
    if WEEKEND.search(text):
        return today + timedelta(days=(5 - today.weekday()) % 7 or 7 if today.weekday() != 5 else 0)
    return None


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _future_date(today: date, month: int, day_of_month: int) -> date | None:
    candidate = _safe_date(today.year, month, day_of_month)
    if candidate is not None and candidate < today:
        candidate = _safe_date(today.year + 1, month, day_of_month)
    return candidate
