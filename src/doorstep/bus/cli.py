"""`doorstep events ...`: inspect the pipeline, retry dead letters, replay the log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from doorstep.context import AppContext

console = Console(stderr=True)
out = Console()

events_app = typer.Typer(help="The event pipeline: log, outbox, dead letters, replay.", no_args_is_help=True)
dead_app = typer.Typer(help="Deliveries that failed every retry.", invoke_without_command=True)
events_app.add_typer(dead_app, name="dead")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")


@contextmanager
def _ctx() -> Iterator[AppContext]:
    from doorstep.app import build_context
    from doorstep.settings import get_settings

    ctx = build_context(get_settings())
    try:
        yield ctx
    finally:
        ctx.engine.dispose()
        ctx.read_engine.dispose()


@dead_app.callback()
def dead_list(
    typer_ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """List dead letters with their error (`doorstep events dead retry` puts them back)."""
    if typer_ctx.invoked_subcommand is not None:
        return
    from doorstep.bus.admin import list_dead

    with _ctx() as ctx, ctx.read_engine.connect() as conn:
        rows = list_dead(conn, limit=limit)
    if not rows:
        out.print("no dead letters")
        return
    table = Table("id", "event", "handler", "key", "attempts", "error")
    for row in rows:
        table.add_row(
            str(row.id),
            row.event_type,
            row.handler,
            row.key,
            str(row.attempts),
            (row.last_error or "").splitlines()[0][:120],
        )
    out.print(table)


@dead_app.command("retry")
def dead_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids to retry; all when omitted.")] = None,
) -> None:
    """Queue dead letters again with a fresh retry budget."""
    from doorstep.bus.admin import retry_dead

    with _ctx() as ctx, ctx.engine.begin() as conn:
        n = retry_dead(conn, clock=ctx.clock, ids=ids)
    console.print(f"{n} dead letter(s) queued again; a running worker picks them up")


@events_app.command("stats")
def events_stats() -> None:
    """Counts: log size and lag, outbox rows by status."""
    from doorstep.bus.admin import stats

    with _ctx() as ctx, ctx.read_engine.connect() as conn:
        for key, value in stats(conn).items():
            out.print(f"{key:16} {value}")


@events_app.command("replay")
def events_replay(
    source: Annotated[
        list[str] | None, typer.Option(help="Only these log sources (segment, aftership, ...).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also when other domains' rows (conversations, returns ...) would be lost."
        ),
    ] = False,
) -> None:
    """Rebuild the projections (profiles, orders, shipments ...) by replaying the inbound log.

    Handlers are idempotent, so domain events re-emitted by the replay cause no second message.
    """
    from sqlalchemy import func, select

    from doorstep.app import build_worker
    from doorstep.bus.admin import ReplayWouldDelete, reset_projections
    from doorstep.ingest.tables import event_log

    if not yes:
        typer.confirm(
            "This empties the projection tables and rebuilds them from the log. Continue?", abort=True
        )
    with _ctx() as ctx:
        try:
            with ctx.engine.begin() as conn:
                emptied = reset_projections(conn, bus=ctx.bus, sources=source, force=force)
                total = int(conn.execute(select(func.count()).select_from(event_log)).scalar_one())
        except ReplayWouldDelete as exc:
            console.print(f"[red]not replayed:[/red] {exc}")
            raise typer.Exit(1) from None
        console.print(f"emptied: {', '.join(emptied) or 'nothing'}")
        worker = build_worker(ctx, name="replay")
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        ) as progress:
            task = progress.add_task("replay", total=total)
            while True:
                n = worker.project_log_batch(limit=1000)
                progress.advance(task, n)
                if n == 0:
                    break
        handled = worker.drain()
    console.print(f"replayed {worker.stats.log_events} log events; {handled} follow-on deliveries")
