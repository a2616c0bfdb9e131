from __future__ import annotations

import random


def backoff_s(attempt: int, *, base_s: float, max_s: float, jitter: float = 0.2) -> float:
    """Exponential backoff with jitter: base, 2*base, 4*base ... capped at max_s."""
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return delay * (1 + random.uniform(-jitter, jitter))
