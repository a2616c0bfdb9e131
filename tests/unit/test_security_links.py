"""Signed links: the sender's fast `sign` makes exactly the tokens itsdangerous makes, so every verifier (and
every link already sent) keeps working; tampered and expired tokens are refused."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from doorstep.security import links
from doorstep.security.links import BadLink, sign, verify

SECRET = "test-secret-key-with-enough-length-0123456789"
SUBJECTS = [
    "0190f0d0-0000-7000-8000-000000000001",
    "0190f0d0-0000-7000-8000-000000000002|email|service",
    "x" * 300,  # long and compressible: the zlib form
    "Grüße €" * 20,  # not ASCII, compressible
    "",
]


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("purpose", ["track", "survey", "unsubscribe"])
def test_sign_makes_the_token_itsdangerous_makes(
    monkeypatch: pytest.MonkeyPatch, purpose: str, subject: str
) -> None:
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    expected = URLSafeTimedSerializer(SECRET, salt=f"doorstep.{purpose}").dumps(subject)
    assert sign(SECRET, purpose, subject) == expected
    assert verify(SECRET, purpose, sign(SECRET, purpose, subject)) == subject


def test_compressible_subject_is_compressed() -> None:
    assert sign(SECRET, "track", "x" * 300).startswith(".")


def test_tampered_tokens_are_refused() -> None:
    token = sign(SECRET, "track", SUBJECTS[0])
    payload, ts, sig = token.rsplit(".", 2)
    other = sign(SECRET, "track", SUBJECTS[1]).rsplit(".", 2)[0]
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    for bad in (
        f"{other}.{ts}.{sig}",  # another subject under this signature
        f"{payload}.{ts}.{flipped}",
        f"{payload}.{ts[:-1]}{'A' if ts[-1] != 'A' else 'B'}.{sig}",  # another time
        token + "x",
        "",
    ):
        with pytest.raises(BadLink):
            verify(SECRET, "track", bad)
    with pytest.raises(BadLink):
        verify(SECRET, "survey", token)  # another purpose
    with pytest.raises(BadLink):
        verify("another-secret-key-with-enough-length-0123456", "track", token)


def test_expired_tokens_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    signed_at = time.time() - 3600
    monkeypatch.setattr(time, "time", lambda: signed_at)
    token = sign(SECRET, "track", SUBJECTS[0])
    monkeypatch.undo()
    assert verify(SECRET, "track", token, max_age_s=3700) == SUBJECTS[0]
    with pytest.raises(BadLink, match="expired"):
        verify(SECRET, "track", token, max_age_s=3500)


def test_key_is_derived_once_per_secret_and_purpose() -> None:
    links._mac.cache_clear()
    for subject in SUBJECTS:
        sign(SECRET, "track", subject)
    assert links._mac.cache_info().misses == 1
