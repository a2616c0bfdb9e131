"""Signed, expiring links for customers who never log in: tracking page, survey, unsubscribe, actions.

>>> token = sign(secret, "track", "order-id", ttl_s=30 * 24 * 3600)
>>> verify(secret, "track", token)  # -> "order-id", or raises BadLink
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import zlib
from typing import Any

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


@functools.lru_cache(maxsize=64)
def _mac(secret: str, purpose: str) -> Any:
    """An HMAC keyed with the key itsdangerous derives for (secret, purpose), ready to be copied: deriving the
    key and building a signer on every call was most of the cost of a signature."""
    signer = _serializer(secret, purpose).make_signer()
    return hmac.new(signer.derive_key(), digestmod=hashlib.sha1)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(secret: str, purpose: str, subject: str) -> str:
    """A token binding `subject` (an order id, customer id ...) to one `purpose` (track, survey, unsubscribe).

    The token is exactly what `URLSafeTimedSerializer(secret, salt=f"doorstep.{purpose}").dumps(subject)` makes
    (compact JSON, zlib when shorter, base64url, timestamp, HMAC-SHA1 with the django-concat key), built
    without itsdangerous's per-call signer and key derivation; `verify` still checks it with itsdangerous."""
    payload = json.dumps(subject, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    compressed = zlib.compress(payload)
    value = b"." + _b64(compressed) if len(compressed) < len(payload) - 1 else _b64(payload)
    ts = int(time.time())
    value += b"." + _b64(ts.to_bytes((ts.bit_length() + 7) // 8 or 1, "big"))
    mac = _mac(secret, purpose).copy()
    mac.update(value)
    return (value + b"." + _b64(mac.digest())).decode("ascii")


def verify(secret: str, purpose: str, token: str, *, max_age_s: int = TRACKING_LINK_TTL_S) -> str:
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise BadLink("this link has expired: look your order up with its number and your email") from None
    except BadSignature:
        raise BadLink("this link is not valid: look your order up with its number and your email") from None
    return str(value)
