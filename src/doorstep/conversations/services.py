"""Loads the assistant's intent model in the background at start-up, so the first customer message does not
wait for it (it is loaded lazily, once per process, either way)."""

from __future__ import annotations

import logging
import threading

from doorstep.context import AppContext

log = logging.getLogger("doorstep.conversations")


def start(ctx: AppContext) -> None:
    if ctx.settings.env == "test":
        return None  # tests load it on first use

    def warm() -> None:
        from doorstep.conversations.nlu.classifier import get_classifier

        try:
            get_classifier()
        except Exception:
            log.exception(
                "the assistant's intent model failed to load; `doorstep assistant train` rebuilds it"
            )

    threading.Thread(target=warm, name="assistant-model", daemon=True).start()
    return None
