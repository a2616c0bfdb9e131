"""Errors of the returns domain."""

from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class ReturnErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    RULE_VIOLATED = "rule_violated"
    CONFLICT = "conflict"


class ReturnError(DoorstepError):
    """Base of the returns domain's errors."""

    code = ReturnErrorCode.INVALID
    status = 422


class InvalidReturn(ReturnError):
    code = ReturnErrorCode.INVALID


class ReturnRefused(ReturnError):
    """The policy says no: window closed, non-returnable item, condition."""

    code = ReturnErrorCode.RULE_VIOLATED


class ReturnStepRefused(ReturnError):
    code = ReturnErrorCode.CONFLICT
    status = 409


class ReturnNotFound(ReturnError):
    code = ReturnErrorCode.NOT_FOUND
    status = 404
