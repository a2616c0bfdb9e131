"""Signed, expiring links for customers who never log in: tracking page, survey, unsubscribe, actions.

>>> token = sign(secret, "track", "order-id", ttl_s=30 * 24 * 3600)
>>> verify(secret, "track", token)  # -> "order-id", or raises BadLink
"""

from __future__ import annotations

import functools

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from doorstep.errors import DoorstepError, ErrorCode

TRACKING_LINK_TTL_S = 60 * 24 * 3600  # past the longest return window plus delivery


class BadLink(DoorstepError):
    code = ErrorCode.FORBIDDEN


@functools.lru_cache(maxsize=64)
def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    """One serializer per (secret, purpose), built once: the sender signs three links per message, and the
    serializer is stateless (the timestamp is read at each signing)."""
    return URLSafeTimedSerializer(secret, salt=f"doorstep.{purpose}")


def sign(secret: str, purpose: str, subject: str) -> str:
    """A token binding `subject` (an order id, customer id ...) to one `purpose` (track, survey, unsubscribe)."""
    return _serializer(secret, purpose).dumps(subject)


def verify(secret: str, purpose: str, token: str, *, max_age_s: int = TRACKING_LINK_TTL_S) -> str:
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise BadLink("this link has expired: look your order up with its number and your email") from None
    except BadSignature:
        raise BadLink("this link is not valid: look your order up with its number and your email") from None
    return str(value)
