from enum import StrEnum

from doorstep.errors import DoorstepError


class IngestErrorCode(StrEnum):
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    UNAUTHENTICATED = "unauthenticated"
    CONFLICT = "conflict"


class IngestError(DoorstepError):
    code = IngestErrorCode.INVALID
    status = 400


class PayloadTooLarge(IngestError):
    code = IngestErrorCode.TOO_LARGE
    status = 400  # Segment answers oversize calls with 400, and SDKs treat 413 the same way


class BadWriteKey(IngestError):
    code = IngestErrorCode.UNAUTHENTICATED
    status = 401


class ReplayedMessageId(IngestError):
    """A messageId reused for a different call: the first is kept, the replay refused."""

    code = IngestErrorCode.CONFLICT
    status = 409
