from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class ErrorCode(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    RULE_VIOLATED = "rule_violated"
    TOO_LARGE = "too_large"


class FeedbackError(DoorstepError):
    """Base of the feedback domain's errors."""

    code = ErrorCode.INVALID


class OrderNotFound(FeedbackError):
    code = ErrorCode.NOT_FOUND


class InvalidAnswer(FeedbackError):
    code = ErrorCode.RULE_VIOLATED
