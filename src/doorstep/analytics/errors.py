from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class ErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"


class AnalyticsError(DoorstepError):
    """The dashboard could not be computed as asked."""

    code = ErrorCode.INVALID


class UnknownDrillSet(AnalyticsError):
    code = ErrorCode.NOT_FOUND
