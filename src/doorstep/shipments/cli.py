"""`doorstep models train eta`, `doorstep shipments import-csv FILE`, `doorstep shipments check`."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)
out = Console()


def _group(parent: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-command group `name` of `parent`, created when no other module made it yet."""
    for info in parent.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help_text, no_args_is_help=True)
    parent.add_typer(group, name=name)
    return group


def register(app: typer.Typer) -> None:
    models = _group(app, "models", "Train and inspect Doorstep's models.")
    train = _group(models, "train", "Train a model and report on a held-out (later) period.")
    train.command("eta")(train_eta)
    shipments = _group(app, "shipments", "Shipments and tracking: import scans, run the periodic checks.")
    shipments.command("import-csv")(import_csv)
    shipments.command("import-aftership")(import_aftership)
    shipments.command("check")(check)


def train_eta(
    from_db: Annotated[
        bool, typer.Option("--from-db", help="Train on delivered shipments in the database.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Train on a folder of *.json/*.jsonl files: AfterShip webhook bodies "
            "(e.g. from `doorstep simulate`) or Doorstep history lines.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    synthetic: Annotated[
        int,
        typer.Option(help="Train on N shipments of synthetic history (a demo; not evidence about carriers)."),
    ] = 0,
    holdout: Annotated[
        float, typer.Option(help="Share of the period held out for the report (the latest).")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed for --synthetic.")] = 7,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Store the model under var/models/eta.json.")
    ] = True,
) -> None:
    """Train the ETA model (quantile gradient-boosted trees) and compare it with the per-lane baseline on a
    held-out later period: mean absolute error in hours, share delivered inside the predicted window, AUC
    for lateness."""
    from doorstep.clock import utcnow
    from doorstep.settings import get_settings
    from doorstep.shipments import eta

    sources = sum([from_db, data is not None, synthetic > 0])
    if sources != 1:
        console.print("[red]error:[/red] choose one source: --from-db, --data DIR or --synthetic N")
        raise typer.Exit(2)
    settings = get_settings()
    if from_db:
        history = _history_from_db(settings.database_url)
        label = "delivered shipments in the database"
    elif data is not None:
        history = history_from_files(data)
        label = f"files in {data}"
    else:
        from doorstep.shipments.simulated import generate

        history = generate(synthetic, seed=seed)
        label = f"{synthetic} synthetic shipments (seed {seed})"
    console.print(f"training on {label}: {len(history)} shipments")
    try:
        with console.status("training") as status:
            result = eta.train(
                history, now=utcnow(), holdout_share=holdout, progress=lambda message: status.update(message)
            )
    except ValueError as exc:
        console.print(f"[red]cannot train:[/red] {exc}")
        raise typer.Exit(1) from None
    out.print(report_table(result.report, title=f"ETA model on a held-out period ({label})"))
    if save:
        path = eta.save_model(result.model, settings.var_dir)
        (path.parent / "eta-report.json").write_text(json.dumps(result.report, indent=2), encoding="utf-8")
        console.print(f"saved {path}; restart the service (or workers) to predict with it")


def report_table(report: dict[str, Any], *, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    model, base = report["model"], report["baseline"]
    table.add_row("mean absolute error (hours)", f"{model['mae_h']:.1f}", f"{base['mae_h']:.1f}")
    table.add_row(
        "delivered inside the window (q10-q90)", f"{model['coverage']:.1%}", f"{base['coverage']:.1%}"
    )
    table.add_row("AUC for lateness", _auc(model["auc"]), _auc(base["auc"]))
    table.add_row("held-out predictions", str(model["n"]), str(base["n"]))
    table.caption = (
        f"trained on {report['train_shipments']} shipments before {report['cutoff'][:16]}, "
        f"tested on {report['test_shipments']} dispatched after"
    )
    return table


def _auc(value: float | None) -> str:
    return "n/a (no late or no on-time)" if value is None else f"{value:.3f}"


def _history_from_db(database_url: str) -> list[Any]:
    from sqlalchemy import select

    from doorstep.db.engine import create_db_engine
    from doorstep.orders.tables import orders
    from doorstep.shipments.repository import ShipmentRepository, shipment_from_row
    from doorstep.shipments.tables import shipments

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(shipments, orders.c.customer_id)
                .select_from(shipments.outerjoin(orders, orders.c.id == shipments.c.order_id))
                .where(shipments.c.delivered_at.is_not(None), shipments.c.is_return.is_(False))
            )
            found = [shipment_from_row(row) for row in rows]
            ShipmentRepository(conn).load_timelines(found)
    finally:
        engine.dispose()
    return found


def history_from_files(folder: Path) -> list[Any]:
    """Delivered shipments from AfterShip webhook bodies (checkpoints merged per tracking number) and from
    Doorstep history lines ({carrier, tracking_number, promised_to, origin_region, destination_region,
    service, scans: [{occurred_at, status, subtag?}]})."""
    from doorstep.shipments.carriers.aftership import parse_tracking
    from doorstep.shipments.carriers.common import parse_optional_time, parse_time
    from doorstep.shipments.model import Shipment, Status, TrackingEvent

    by_key: dict[tuple[str, str], Shipment] = {}
    for path in sorted([*folder.rglob("*.json"), *folder.rglob("*.jsonl")]):
        text = path.read_text(encoding="utf-8")
        docs = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else [json.loads(text)]
        )
        for doc in docs:
            items = doc if isinstance(doc, list) else [doc]
            for item in items:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("msg"), dict)
                    and "checkpoints" in item["msg"]
                ):
                    msg = item["msg"]
                    parsed = parse_tracking(msg)
                    scans = parsed.scans
                    promised = parse_optional_time(
                        msg.get("order_promised_delivery_date"), "order_promised_delivery_date"
                    )
                    carrier, number = parsed.carrier, parsed.tracking_number
                    extra: dict[str, Any] = {
                        "service": parsed.service,
                        "origin_region": parsed.origin_region,
                        "destination_region": parsed.destination_region,
                    }
                elif isinstance(item, dict) and isinstance(item.get("scans"), list):
                    carrier, number = str(item["carrier"]), str(item["tracking_number"])
                    scans = [
                        TrackingEvent(
                            carrier=carrier,
                            tracking_number=number,
                            occurred_at=parse_time(s["occurred_at"], "occurred_at"),
                            status=Status.parse(s["status"]),
                            subtag=s.get("subtag"),
                            message=s.get("message"),
                            source="history",
                        )
                        for s in item["scans"]
                    ]
                    promised = parse_optional_time(item.get("promised_to"), "promised_to")
                    extra = {k: item.get(k) for k in ("service", "origin_region", "destination_region")}
                else:
                    continue
                s = by_key.get((carrier, number))
                if s is None and scans:
                    first = min(scans, key=lambda e: e.occurred_at).occurred_at
                    s = by_key[(carrier, number)] = Shipment.create(
                        id=f"file:{carrier}:{number}",
                        carrier=carrier,
                        tracking_number=number,
                        now=first,
                        promised_to=promised,
                        **extra,
                    )
                if s is None:
                    continue
                s.promised_to = s.promised_to or promised
                for scan in sorted(scans, key=lambda e: e.occurred_at):
                    s.record(scan, now=scan.occurred_at)
                s.events.clear()
    return [s for s in by_key.values() if s.delivered_at is not None]


def import_csv(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row (see POST /api/v1/tracking-events.csv).", exists=True, dir_okay=False
        ),
    ],
    chunk: Annotated[int, typer.Option(help="Rows per log entry.")] = 1000,
    drain: Annotated[
        bool, typer.Option("--drain/--no-drain", help="Project the scans now (else the worker will).")
    ] = True,
) -> None:
    """Import carrier scans from a CSV file: validated whole first (nothing is stored if a row is bad), then
    appended to the event log in chunks and projected."""
    from doorstep.app import build_context, build_worker
    from doorstep.ingest.log import LogEntry, append
    from doorstep.settings import get_settings
    from doorstep.shipments.carriers import generic
    from doorstep.shipments.carriers.codes import cached_tables
    from doorstep.shipments.errors import InvalidTrackingPayload

    settings = get_settings()
    tables = cached_tables(settings.carrier_codes_dir)
    try:
        events = generic.csv_to_events(file.read_text(encoding="utf-8-sig"))
        for start in range(0, len(events), chunk):
            try:
                generic.parse_events({"events": events[start : start + chunk]}, tables)
            except InvalidTrackingPayload as exc:
                raise InvalidTrackingPayload(_csv_location(exc, start)) from None
    except InvalidTrackingPayload as exc:
        console.print(f"[red]{file}: nothing imported:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    ctx = build_context(settings)
    new = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("appending", total=len(events))
        for start in range(0, len(events), chunk):
            part = events[start : start + chunk]
            digest = hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()
            entry = LogEntry(
                "tracking",
                f"csv:{digest}",
                "tracking_events",
                None,
                "tracking:batch",
                ctx.clock.now(),
                {"events": part},
            )
            with ctx.engine.begin() as conn:
                new += append(conn, [entry], received_at=ctx.clock.now())
            progress.advance(task, len(part))
        if drain:
            worker = build_worker(ctx, name="import-csv")
            task = progress.add_task("projecting", total=None)
            while (n := worker.run_once()) > 0:
                progress.advance(task, n)
    ctx.engine.dispose()
    console.print(
        f"{len(events)} rows read, {new} new log entries"
        + ("" if drain else "; the worker will project them")
    )


def import_aftership(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON lines, one AfterShip webhook body per line (for example "
            "aftership_webhooks.jsonl from `doorstep simulate`).",
            exists=True,
            dir_okay=False,
        ),
    ],
    drain: Annotated[
        bool, typer.Option("--drain/--no-drain", help="Project the scans now (else the worker will).")
    ] = True,
) -> None:
    """Load recorded AfterShip webhook bodies straight into the event log: an operator's import, so neither
    signature nor age is checked (the HTTP endpoint refuses deliveries older than 24 hours). Every body is
    validated first; nothing is stored if one is malformed. Duplicates (same event_id) are skipped."""
    from doorstep.app import build_context, build_worker
    from doorstep.ingest.log import LogEntry, append
    from doorstep.settings import get_settings
    from doorstep.shipments.carriers import aftership
    from doorstep.shipments.carriers.common import invalid
    from doorstep.shipments.errors import InvalidTrackingPayload

    entries = []
    try:
        for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                body = json.loads(line)
                if not isinstance(body, dict) or not isinstance(body.get("event_id"), str):
                    raise invalid("event_id", "required")
                event = str(body.get("event") or "")
                ts = body.get("ts")
                if not isinstance(ts, int | float):
                    raise invalid("ts", "required unix timestamp (seconds)")
                from datetime import UTC, datetime

                sent_at = datetime.fromtimestamp(float(ts), tz=UTC)
                key = "aftership"
                if event in aftership.TRACKING_EVENTS:
                    parsed = aftership.parse_tracking(body.get("msg") or {})
                    key = f"tracking:{parsed.carrier}:{parsed.tracking_number}"
            except (InvalidTrackingPayload, json.JSONDecodeError) as exc:
                detail = exc.detail if isinstance(exc, InvalidTrackingPayload) else f"malformed JSON: {exc}"
                raise InvalidTrackingPayload(f"line {line_no}: {detail}") from None
            entries.append(LogEntry("aftership", body["event_id"], event[:32], None, key, sent_at, body))
    except InvalidTrackingPayload as exc:
        console.print(f"[red]{file}: nothing imported:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    ctx = build_context(get_settings())
    new = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("appending", total=len(entries))
        for start in range(0, len(entries), 500):
            part = entries[start : start + 500]
            with ctx.engine.begin() as conn:
                new += append(conn, part, received_at=ctx.clock.now())
            progress.advance(task, len(part))
        if drain:
            worker = build_worker(ctx, name="import-aftership")
            task = progress.add_task("projecting", total=None)
            while (n := worker.run_once()) > 0:
                progress.advance(task, n)
    ctx.engine.dispose()
    console.print(
        f"{len(entries)} webhook bodies read, {new} new" + ("" if drain else "; the worker will project them")
    )


def _csv_location(exc: Any, start: int) -> str:
    """ "events[4].occurred_at: not a timestamp" -> "row 6, column occurred_at: not a timestamp"."""
    errors = exc.extra.get("errors") or [{}]
    field = str(errors[0].get("field", ""))
    message = str(errors[0].get("message", exc.detail))
    if not field.startswith("events["):
        return exc.detail
    index_text, _, column = field[len("events[") :].partition("].")
    row = int(index_text) + start + 2  # 1-based, after the header row
    return f"row {row}, column {column.split('.')[-1] or '?'}: {message}"


def check(
    hours_ahead: Annotated[
        float, typer.Option(help="Pretend it is this many hours later (for a dry look).")
    ] = 0.0,
) -> None:
    """Run the stalled / probably-lost checks and re-predict every active shipment once (the service runs
    this every DOORSTEP_SHIPMENT_CHECK_INTERVAL_S)."""
    from doorstep.app import build_context
    from doorstep.clock import FixedClock, utcnow
    from doorstep.settings import get_settings
    from doorstep.shipments.handlers import run_checks

    ctx = build_context(get_settings())
    clock = FixedClock(utcnow() + timedelta(hours=hours_ahead)) if hours_ahead else None
    counts = run_checks(ctx, clock=clock)
    ctx.engine.dispose()
    out.print(f"checked {counts['checked']} active shipments; {counts['events']} events recorded")
