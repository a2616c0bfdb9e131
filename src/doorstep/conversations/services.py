"""Background work of the assistant in the serving process: warm the intent model at start-up (it is loaded
lazily, once per process, either way) and run the actions customers confirmed in conversations."""

from __future__ import annotations

import logging
import threading

from doorstep.context import AppContext

log = logging.getLogger("doorstep.conversations")

IDLE_WAIT_S = 1.0  # the loop also wakes at once when a conversation records an action


def register(ctx: AppContext) -> None:
    ctx.services["assistant_actions_event"] = event = threading.Event()
    ctx.services["wake_assistant_actions"] = event.set


class ActionLoop:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.stop = threading.Event()
        self.wake: threading.Event = ctx.services["assistant_actions_event"]
        self.thread = threading.Thread(target=self._run, name="assistant-actions", daemon=True)

    def _run(self) -> None:
        from doorstep.conversations.handlers import perform_pending_actions

        while not self.stop.is_set():
            try:
                n = perform_pending_actions(self.ctx)
            except Exception:
                log.exception("running confirmed assistant actions failed")
                n = 0
            if n == 0:
                self.wake.wait(IDLE_WAIT_S)
                self.wake.clear()

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout=10)


def start(ctx: AppContext) -> ActionLoop | None:
    if ctx.settings.env == "test" and not ctx.settings.in_process_worker:
        return None  # tests run actions by hand (handlers.perform_pending_actions) and load the model lazily

    def warm() -> None:
        from doorstep.conversations.nlu.classifier import get_classifier

        try:
            get_classifier()
        except Exception:
            log.exception(
                "the assistant's intent model failed to load; `doorstep assistant train` rebuilds it"
            )

    threading.Thread(target=warm, name="assistant-model", daemon=True).start()
    loop = ActionLoop(ctx)
    loop.thread.start()
    return loop
