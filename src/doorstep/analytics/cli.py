"""`doorstep analytics ...`: build or bring up to date the dashboard's replica, with a progress bar.

Run it before starting the server on a large store: the initial build reads every table once (minutes at
1M orders), and the server then starts warm, reading only what changed since.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)

analytics_app = typer.Typer(help="The journey dashboard's analytics replica.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(analytics_app, name="analytics")


@analytics_app.command("sync")
def sync(
    rebuild: Annotated[
        bool, typer.Option(help="Drop the replica and build it again from the store.")
    ] = False,
) -> None:
    """Syncs the replica under var_dir from the store (the first time: builds it)."""
    from doorstep.analytics.replica import open_replica
    from doorstep.settings import get_settings

    settings = get_settings()
    replica = open_replica(settings.database_url, var_dir=settings.var_dir)
    try:
        if rebuild:
            replica.drop()
        if replica.path is None:
            console.print("[red]the replica file is held by another process (a running server?)[/red]")
            raise typer.Exit(1)
        with Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("starting", total=None)

            def progress(step: str, done: int, total: int) -> None:
                bar.update(task, description=step, completed=done, total=total)

            report = replica.sync(progress=progress)
    finally:
        replica.close()
    kind = "built" if report.initial else "synced"
    changed = sum(report.rows.values())
    console.print(
        f"[green]{kind}[/green] {replica.path} in {report.seconds:.1f} s: {changed:,} rows read, "
        f"{report.orders_recomputed:,} orders' facts computed"
        + (f", deleted {report.deleted}" if report.deleted else "")
    )
