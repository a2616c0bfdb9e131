"""The `doorstep` command. Each command is a thin call into the app or a domain; `--help` explains each."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from doorstep.settings import get_settings

app = typer.Typer(
    help="Doorstep: capture every customer event, run the chain after purchase, tell customers before they ask.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out = Console()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic) at DOORSTEP_DATABASE_URL."""
    from doorstep.db.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    console.print(f"[green]database is up to date[/green] ({_safe_url(settings.database_url)})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (DOORSTEP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DOORSTEP_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="API processes. The in-process worker runs in each.")] = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run the in-process worker.")] = False,
    pipeline_process: Annotated[
        bool | None,
        typer.Option(
            "--pipeline-process/--no-pipeline-process",
            help="Run the worker and the notification sender in a child process of their own, not as threads "
            "of the API process: a second core for them (DOORSTEP_PIPELINE_PROCESS).",
        ),
    ] = None,
    demo: Annotated[
        bool | None,
        typer.Option("--demo/--no-demo", help="Stream the simulated shop into this server (DOORSTEP_DEMO)."),
    ] = None,
    skip_migrate: Annotated[
        bool, typer.Option("--skip-migrate", help="Do not run migrations first.")
    ] = False,
) -> None:
    """Run the API, the web UI and (by default) an in-process worker."""
    import uvicorn

    from doorstep.db.engine import create_db_engine
    from doorstep.db.migrate import upgrade
    from doorstep.devseed import seed_development

    if host:
        os.environ["DOORSTEP_HOST"] = host
    if port:
        os.environ["DOORSTEP_PORT"] = str(port)
    if no_worker:
        os.environ["DOORSTEP_IN_PROCESS_WORKER"] = "false"
    if pipeline_process is not None:
        os.environ["DOORSTEP_PIPELINE_PROCESS"] = "true" if pipeline_process else "false"
    if demo is not None:
        os.environ["DOORSTEP_DEMO"] = "true" if demo else "false"
    get_settings.cache_clear()
    settings = get_settings()
    if not skip_migrate:
        upgrade(settings.database_url)
    engine = create_db_engine(settings.database_url)
    seed_development(engine, settings)
    engine.dispose()
    base = settings.public_base_url
    console.print(
        f"[bold green]Doorstep[/bold green] on {base}  (database: {_safe_url(settings.database_url)})"
    )
    console.print(f"  dashboard      {base}/dashboard")
    console.print(f"  agent inbox    {base}/inbox")
    console.print(f"  API docs       {base}/api/docs")
    console.print(f"  Segment ingest {base}/v1/batch")
    if settings.is_development:
        console.print(f"  write key      [cyan]{settings.dev_write_key}[/cyan]")
        console.print(
            f"  admin login    [cyan]{settings.dev_admin_email}[/cyan] / [cyan]{settings.dev_admin_password}[/cyan]"
        )
    if settings.demo:
        console.print(
            "  demo           the simulated boutique is streaming in (turn off: --no-demo or DOORSTEP_DEMO=false)"
        )
    uvicorn.run(
        "doorstep.app:create_server_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
    )


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="How many worker processes to start.")] = 1,
    no_sender: Annotated[
        bool,
        typer.Option(
            "--no-sender",
            help="Do not run the notification sender here (by default each worker process runs one; "
            "claims are leased, so senders in several processes never send a message twice at once).",
        ),
    ] = False,
    sender_only: Annotated[
        bool,
        typer.Option(
            "--sender-only",
            help="Run only the notification sender (no outbox worker): beside `doorstep worker --no-sender`, "
            "worker and sender each get an interpreter of their own.",
        ),
    ] = False,
) -> None:
    """Run worker processes: project the inbound log, deliver domain events to handlers and send the
    notifications they queue."""
    if no_sender and sender_only:
        console.print("[red]error:[/red] --no-sender and --sender-only exclude each other")
        raise typer.Exit(2)
    from doorstep.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if processes > 1:
        import multiprocessing

        procs = [
            multiprocessing.Process(target=_run_worker, args=(not no_sender, not sender_only), daemon=False)
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return
    _run_worker(not no_sender, not sender_only)


def _run_worker(with_sender: bool = True, with_worker: bool = True) -> None:
    from doorstep.app import build_context, run_pipeline, settle_heap

    settings = get_settings()
    ctx = build_context(settings)
    settle_heap()  # a process of its own: startup objects leave the collector's sight
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print(
        f"worker started ({_safe_url(settings.database_url)}; outbox worker: {'yes' if with_worker else 'no'}, "
        f"notification sender: {'yes' if with_sender else 'no'})"
    )
    run_pipeline(ctx, stop, with_sender=with_sender, with_worker=with_worker)


keys_app = typer.Typer(
    help="API keys: write keys (ingest only) and secret keys with scopes.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    kind: Annotated[
        str, typer.Option(help="'write' (ingest only, safe in browsers) or 'secret'.")
    ] = "secret",
    scope: Annotated[list[str] | None, typer.Option(help="Scope for a secret key; repeat for more.")] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from doorstep.clock import utcnow
    from doorstep.db.engine import create_db_engine

    engine = create_db_engine(get_settings().database_url)
    try:
        with engine.begin() as conn:
            from doorstep.security.keys import create_key

            key = create_key(conn, kind=kind, scopes=list(scope or []), name=name, now=utcnow())
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print("[yellow]Store this key now: it is shown only once.[/yellow]")
    out.print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefix, kind, scopes); secrets are never shown."""
    from sqlalchemy import select

    from doorstep.db.engine import create_db_engine
    from doorstep.security.tables import api_keys

    engine = create_db_engine(get_settings().database_url)
    table = Table("prefix", "kind", "scopes", "name", "created", "revoked")
    with engine.connect() as conn:
        for row in conn.execute(select(api_keys).order_by(api_keys.c.created_at)):
            table.add_row(
                row.prefix + "…",
                row.kind,
                ", ".join(row.scopes),
                row.name,
                f"{row.created_at:%Y-%m-%d}",
                f"{row.revoked_at:%Y-%m-%d}" if row.revoked_at else "",
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The prefix shown by `keys list`.")]) -> None:
    """Revoke a key by its prefix."""
    from sqlalchemy import update

    from doorstep.clock import utcnow
    from doorstep.db.engine import create_db_engine
    from doorstep.security.tables import api_keys

    engine = create_db_engine(get_settings().database_url)
    with engine.begin() as conn:
        n = conn.execute(
            update(api_keys).where(api_keys.c.prefix == prefix.rstrip("…")).values(revoked_at=utcnow())
        ).rowcount
    if not n:
        console.print(f"[red]no key with prefix {prefix}[/red]: see `doorstep keys list`")
        raise typer.Exit(1)
    console.print("revoked")


users_app = typer.Typer(help="Staff users who sign in to the web UI.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Sign-in email.")],
    role: Annotated[str, typer.Option(help="admin, analyst, agent or driver.")] = "agent",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password: Annotated[str | None, typer.Option(help="Password (asked for when omitted).")] = None,
) -> None:
    """Add a staff user (password stored with argon2)."""
    from doorstep.clock import utcnow
    from doorstep.db.engine import create_db_engine
    from doorstep.security.users import create_user

    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    engine = create_db_engine(get_settings().database_url)
    try:
        with engine.begin() as conn:
            create_user(conn, email=email, password=password, role=role, name=name, now=utcnow())
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"created {role} {email}")


@users_app.command("list")
def users_list() -> None:
    """List staff users."""
    from sqlalchemy import select

    from doorstep.db.engine import create_db_engine
    from doorstep.security.tables import users

    engine = create_db_engine(get_settings().database_url)
    table = Table("email", "name", "role", "active")
    with engine.connect() as conn:
        for row in conn.execute(select(users).order_by(users.c.email)):
            table.add_row(row.email, row.name, row.role, "yes" if row.is_active else "no")
    out.print(table)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


# Commands that live with their domain: each `doorstep.<module>.cli` has `register(app)`.
CLI_MODULES = [
    f"doorstep.{name}.cli"
    for name in (
        "bus",
        "simulator",
        "customers",
        "ingest",
        "orders",
        "shipments",
        "returns",
        "notifications",
        "conversations",
        "feedback",
        "analytics",
    )
]
for _module_name in CLI_MODULES:
    if importlib.util.find_spec(_module_name) is not None:
        importlib.import_module(_module_name).register(app)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="doorstep")


if __name__ == "__main__":  # pragma: no cover
    main()
