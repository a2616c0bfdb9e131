"""What other domains use from feedback: the survey link for the post-delivery follow-up message."""

from __future__ import annotations

from doorstep.security.links import sign
from doorstep.settings import Settings

SURVEY_PURPOSE = "survey"


def survey_url(settings: Settings, order_id: str) -> str:
    """The signed, public survey link for an order (valid for the tracking-link lifetime)."""
    return f"{settings.public_base_url.rstrip('/')}/s/{sign(settings.secret_key, SURVEY_PURPOSE, order_id)}"
