from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class ErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"


_STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INVALID: 400,
    ErrorCode.RATE_LIMITED: 429,
}


class ConversationError(DoorstepError):
    """Base of the conversations domain's errors."""

    def __init__(self, detail: str, *, code: ErrorCode = ErrorCode.INVALID, **extra: object):
        super().__init__(detail, code=code, status=_STATUS[code], **extra)


class ConversationNotFound(ConversationError):
    def __init__(self, conversation_id: str):
        super().__init__(f"no conversation {conversation_id}", code=ErrorCode.NOT_FOUND)
