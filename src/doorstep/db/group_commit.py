"""Group commit: writes submitted by concurrent requests run together in one transaction, so one commit (one
fsync) makes many of them durable. Each caller still gets its answer only after its rows are on disk.

>>> writer = GroupCommitter(engine)
>>> new = await writer.submit(lambda conn: append(conn, entries, received_at=now))
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
MAX_GROUP = 64  # writes per transaction: bounds the time a group holds the write lock


class GroupCommitter:
    def __init__(self, engine: Engine, *, max_group: int = MAX_GROUP):
        self.engine = engine
        self.max_group = max_group
        self._queue: queue.SimpleQueue[tuple[Callable[[Connection], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.groups = 0  # transactions committed (for tests and metrics)

    def submit_future(self, write: Callable[[Connection], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the group committer is closed")
        self._ensure_started()
        future: Future[T] = Future()
        self._queue.put((write, future))
        return future

    async def submit(self, write: Callable[[Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit_future(write))

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="doorstep-group-commit", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while len(group) < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[tuple[Callable[[Connection], Any], Future[Any]]]) -> None:
        live = [(write, future) for write, future in group if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with self.engine.begin() as conn:
                results = [write(conn) for write, _ in live]
        except Exception as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            # one bad write must not fail the others: run each alone
            for write, future in live:
                try:
                    with self.engine.begin() as conn:
                        future.set_result(write(conn))
                except Exception as exc:
                    future.set_exception(exc)
            return
        self.groups += 1
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)
