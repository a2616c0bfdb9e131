"""An app under test: the real FastAPI app on a test database, with the worker drained by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from doorstep.app import build_worker, create_app
from doorstep.bus.worker import Worker
from doorstep.clock import Clock
from doorstep.context import AppContext
from doorstep.settings import Settings


class AppUnderTest:
    def __init__(self, client: TestClient):
        self.client = client
        self.ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        self.worker: Worker = build_worker(self.ctx, name="test")

    def drain(self) -> int:
        return self.worker.drain()


@contextmanager
def running_app(settings: Settings, clock: Clock) -> Iterator[AppUnderTest]:
    app = create_app(settings, clock=clock, start_worker=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield AppUnderTest(client)
