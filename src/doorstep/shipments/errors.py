"""Errors of the shipments domain: one base, one code enum, messages that name the value and the rule."""

from __future__ import annotations

from enum import StrEnum

from doorstep.errors import DoorstepError


class ShipmentErrorCode(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    RULE_VIOLATED = "rule_violated"
    UNAUTHENTICATED = "unauthenticated"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    NOT_CONFIGURED = "not_configured"


class ShipmentError(DoorstepError):
    code = ShipmentErrorCode.INVALID
    status = 400


class ShipmentNotFound(ShipmentError):
    code = ShipmentErrorCode.NOT_FOUND
    status = 404


class InvalidTrackingPayload(ShipmentError):
    """A webhook or import body that does not parse: the detail names the field. Nothing is stored."""

    code = ShipmentErrorCode.INVALID
    status = 422


class PayloadTooLarge(ShipmentError):
    code = ShipmentErrorCode.TOO_LARGE
    status = 413


class BadSignature(ShipmentError):
    """Missing, wrong, stale or replayed signature on a provider webhook."""

    code = ShipmentErrorCode.UNAUTHENTICATED
    status = 401


class WebhookNotConfigured(ShipmentError):
    """The shared secret for this webhook is not set: refuse rather than accept unsigned data."""

    code = ShipmentErrorCode.NOT_CONFIGURED
    status = 503


class ShipmentRuleViolated(ShipmentError):
    code = ShipmentErrorCode.RULE_VIOLATED
    status = 422


class ModelNotTrained(ShipmentError):
    code = ShipmentErrorCode.NOT_FOUND
    status = 404
