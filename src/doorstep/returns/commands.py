"""Commands of the returns domain for callers that hold a connection (the assistant)."""

from __future__ import annotations

from typing import Any


def start_return_for_order(conn: Any, **kwargs: Any) -> str:
    """See doorstep.shipments.actions_lastmile.start_return_for_order."""
    from doorstep.shipments.actions_lastmile import start_return_for_order as command

    return command(conn, **kwargs)
