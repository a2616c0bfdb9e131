"""Test support for tests that run the product in subprocesses (`doorstep worker`, `doorstep serve`)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the product's graceful stop), then SIGKILL if it has not exited within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Polls `condition` until it holds; fails the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
