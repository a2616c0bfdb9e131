"""Opaque keyset cursors: base64url of the last row's sort key, so pages stay stable while rows are added."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson

from doorstep.errors import DoorstepError, ErrorCode

MAX_PAGE_SIZE = 200


class BadCursor(DoorstepError):
    code = ErrorCode.INVALID
    status = 400


def encode_cursor(*values: Any) -> str:
    parts = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, *, kinds: tuple[type, ...]) -> list[Any]:
    """The sort key in `cursor`; values whose kind is datetime are parsed back. Raises BadCursor (400)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = orjson.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for value, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                out.append(datetime.fromisoformat(value))
            elif not isinstance(value, kind):
                raise ValueError("wrong type")
            else:
                out.append(value)
        return out
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadCursor(
            "cursor: not a cursor this API issued; pass `next_cursor` from the previous page unchanged",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from None
