"""`doorstep simulate`: generate a retailer's world to files, or stream it live into a running server."""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command(name="simulate")(simulate)


def simulate(
    profile: Annotated[
        str, typer.Option(help="A shipped profile (boutique, large) or a path to a YAML profile.")
    ] = "boutique",
    orders: Annotated[
        int | None, typer.Option(help="How many orders (default: the profile's).", min=1)
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same world, byte for byte.")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Write files into this directory (JSONL/CSV, see manifest.json).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day (YYYY-MM-DD); default: the profile's start.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Day after the last (YYYY-MM-DD); default: the profile's end.")
    ] = None,
    processes: Annotated[
        int | None, typer.Option(help="Worker processes for files (default: CPU count).", min=1)
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Stream into a running server instead of writing files.")
    ] = False,
    url: Annotated[str, typer.Option(help="Live: the server's public base URL.")] = "http://127.0.0.1:8000",
    write_key: Annotated[
        str | None, typer.Option(help="Live: a Segment write key (`doorstep keys create --kind write`).")
    ] = None,
    speed: Annotated[
        float,
        typer.Option(help="Live: simulated seconds per real second (1440 = a day a minute).", min=0.001),
    ] = 1440.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Live: a secret key with orders:write, to import the reviews (`doorstep keys create --scope orders:write`).",
        ),
    ] = None,
    history_days: Annotated[
        float | None,
        typer.Option(
            help="Live: start the world this many days before now (orders scaled to the profile's daily rate).",
            min=0.0,
        ),
    ] = None,
) -> None:
    """Generate a seeded retailer's world: Segment events, carrier webhooks, customer messages, feedback and
    the ground truth, as files (--out DIR) or streamed live into a running server (--live).

    Examples: `doorstep simulate --profile boutique --orders 5000 --seed 7 --out var/sim`;
    `doorstep simulate --live --url http://127.0.0.1:8000 --write-key wk_... --speed 1440 --history-days 3`.
    """
    from doorstep.simulator.errors import ProfileInvalid, ProfileNotFound
    from doorstep.simulator.profile import load_profile

    try:
        prof = load_profile(profile)
    except ProfileInvalid as exc:
        console.print(f"[red]invalid profile[/red] {profile}: nothing was written or sent.")
        for problem in exc.problems:
            console.print(f"  - {problem}")
        raise typer.Exit(2) from None
    except ProfileNotFound as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    try:
        first = date.fromisoformat(start) if start else None
        last = date.fromisoformat(end) if end else None
    except ValueError as exc:
        console.print(f"[red]error:[/red] --start/--end must be dates like 2026-09-01: {exc}")
        raise typer.Exit(2) from None
    if first and last and last <= first:
        console.print(
            f"[red]error:[/red] --end ({last}) must be after --start ({first}); nothing was written or sent."
        )
        raise typer.Exit(2)
    if live:
        _live(
            prof,
            orders=orders,
            seed=seed,
            url=url,
            write_key=write_key,
            speed=speed,
            history_days=history_days,
            start=first,
            end=last,
            api_key=api_key,
        )
        return
    if out is None:
        console.print("[red]error:[/red] say where to write: --out DIR (or stream with --live)")
        raise typer.Exit(2)
    _files(prof, orders=orders, seed=seed, out=out, start=first, end=last, processes=processes)


def _files(prof, *, orders, seed, out, start, end, processes):
    from doorstep.simulator.files import write_files
    from doorstep.simulator.world import make_plan

    try:
        plan = make_plan(prof, orders=orders, seed=seed, start=start, end=end)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}; nothing was written.")
        raise typer.Exit(2) from None
    console.print(
        f"simulating [bold]{prof.name}[/bold]: {plan.orders:,} orders, {plan.customer_count:,} customers, "
        f"{plan.start} + {plan.days} days, seed {seed} -> {out}"
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("orders"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("writing", total=plan.orders)
        result = write_files(
            plan,
            out,
            processes=processes or os.cpu_count() or 1,
            on_progress=lambda done: progress.update(task, completed=done),
        )
    counts = result.counts
    console.print(
        f"[green]done[/green] in {result.seconds:.1f} s: {counts.get('segment_events', 0):,} Segment events in "
        f"{counts.get('segment_batches', 0):,} batches, {counts.get('aftership', 0):,} AfterShip webhooks, "
        f"{counts.get('twilio', 0) + counts.get('emails', 0) + counts.get('messages', 0):,} customer messages, "
        f"{counts.get('feedback', 0):,} feedback rows; {result.bytes_written / 1e6:,.0f} MB. See {out / 'manifest.json'}"
    )


def _live(prof, *, orders, seed, url, write_key, speed, history_days, start, end, api_key):
    from doorstep.settings import get_settings
    from doorstep.simulator.errors import ServerUnreachable
    from doorstep.simulator.live import Sender, Targets, stream, wait_for_server
    from doorstep.simulator.world import generate

    settings = get_settings()
    key = (
        write_key
        or os.environ.get("DOORSTEP_WRITE_KEY")
        or (settings.dev_write_key if settings.is_development else "")
    )
    if not key:
        console.print(
            "[red]error:[/red] pass --write-key (create one with `doorstep keys create --kind write`)"
        )
        raise typer.Exit(2)
    if history_days is not None:
        start_dt = datetime.now(UTC) - timedelta(days=history_days)
        start = start_dt.date()
        end = end or (start + timedelta(days=max(7, int(history_days) + 7)))
        if orders is None:
            rate = prof.orders / max(1, (prof.end - prof.start).days)
            orders = max(1, int(rate * (end - start).days))
    world = generate(prof, orders=orders, seed=seed, start=start, end=end)
    targets = Targets(
        base_url=url,
        write_key=key,
        aftership_secret=os.environ.get(
            "DOORSTEP_AFTERSHIP_WEBHOOK_SECRET", settings.aftership_webhook_secret
        ),
        twilio_auth_token=os.environ.get("DOORSTEP_TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        email_secret=os.environ.get(
            "DOORSTEP_INBOUND_EMAIL_SECRET", getattr(settings, "inbound_email_secret", "")
        ),
        api_key=api_key or "",
        secret_key=settings.secret_key,  # the server's, to sign survey links (same DOORSTEP_SECRET_KEY)
    )
    stop = threading.Event()
    console.print(f"waiting for {url} ...")
    if not wait_for_server(url, timeout_s=30, stop=stop):
        console.print(
            f"[red]error:[/red] {url}/healthz did not answer: start the server with `doorstep serve`"
        )
        raise typer.Exit(1)
    sender = Sender(targets, stop=stop)
    console.print(
        f"streaming [bold]{prof.name}[/bold] ({world.orders:,} orders from {world.plan.start}) at {speed:g}x "
        "(never ahead of now); Ctrl-C stops"
    )
    total = world.plan.days * 86400.0
    begin = world.plan.start_epoch
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("simulated time", total=total, stats="")

        def show(stats):
            when = datetime.fromtimestamp(stats.sim_time or begin, tz=UTC)
            progress.update(
                task,
                completed=max(0.0, (stats.sim_time or begin) - begin),
                description=f"{when:%Y-%m-%d %H:%M}",
                stats=f"sent {stats.total_sent:,} rejected {stats.total_rejected:,} retries {stats.retries}",
            )

        try:
            stats = stream(
                world.timeline(),
                sender,
                speed=speed,
                stop=stop,
                on_progress=show,
                sim_start=world.plan.start_epoch,
            )
        except KeyboardInterrupt:
            stop.set()
            stats = sender.stats
        except ServerUnreachable as exc:
            console.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(1) from None
        finally:
            sender.close()
    console.print(f"sent {stats.sent}, rejected {stats.rejected}, skipped {stats.skipped}")
    for line in stats.first_rejections[:5]:
        console.print(f"  [yellow]rejected[/yellow] {line}")
    if stats.total_rejected:
        raise typer.Exit(1)
