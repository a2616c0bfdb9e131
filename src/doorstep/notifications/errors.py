"""Errors of the notifications domain."""

from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class NotificationErrorCode(StrEnum):
    JOURNEY_INVALID = "journey_invalid"
    TEMPLATE_INVALID = "template_invalid"
    NOT_FOUND = "not_found"
    BAD_SIGNATURE = "bad_signature"
    NOT_CONFIGURED = "not_configured"
    INVALID = "invalid"


class NotificationError(DoorstepError):
    code = NotificationErrorCode.INVALID
    status = 400


class JourneyInvalid(NotificationError):
    """A journey that would not run; `field` names where (e.g. rules[3].when.delay_hours)."""

    code = NotificationErrorCode.JOURNEY_INVALID
    status = 422


class TemplateInvalid(NotificationError):
    code = NotificationErrorCode.TEMPLATE_INVALID
    status = 422


class NotificationNotFound(NotificationError):
    code = NotificationErrorCode.NOT_FOUND
    status = 404


class BadWebhookSignature(NotificationError):
    """A provider webhook whose signature does not verify: refused, nothing recorded."""

    code = NotificationErrorCode.BAD_SIGNATURE
    status = 403


class ChannelNotConfigured(NotificationError):
    code = NotificationErrorCode.NOT_CONFIGURED
    status = 403
