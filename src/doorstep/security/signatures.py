"""HMAC signatures for inbound webhooks and outbound deliveries. Every comparison is constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def hmac_sha256_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def constant_time_equals(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 over the full URL then each POST parameter, sorted by
    name, as name followed by value."""
    data = url + "".join(f"{k}{v}" for k, v in sorted(params, key=lambda kv: kv[0]))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def meta_signature(app_secret: str, body: bytes) -> str:
    """Meta's X-Hub-Signature-256 value for WhatsApp Cloud and Messenger webhooks."""
    return "sha256=" + hmac_sha256_hex(app_secret, body)


def timestamped_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Doorstep's outbound webhook signature: hex HMAC-SHA256 over "{timestamp}.{body}"."""
    return hmac_sha256_hex(secret, str(timestamp).encode() + b"." + body)
