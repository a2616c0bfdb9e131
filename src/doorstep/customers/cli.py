"""`doorstep customers ...`: look a customer up (and see why their identities belong together), erase one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from doorstep.context import AppContext

console = Console(stderr=True)
out = Console()

customers_app = typer.Typer(help="Customer profiles: look up, explain, erase.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(customers_app, name="customers")


def _ctx() -> AppContext:
    from doorstep.app import build_context
    from doorstep.settings import get_settings

    return build_context(get_settings())


def _find(ctx: AppContext, ref: str) -> str:
    """A customer id from an id, an email, a phone number or a userId."""
    from doorstep.customers.queries import find_by_identity, resolve_id
    from doorstep.errors import NotFound

    region = ctx.settings.default_phone_region or None
    with ctx.read_engine.connect() as conn:
        try:
            return resolve_id(conn, ref)
        except NotFound:
            pass
        kinds = ["email"] if "@" in ref else ["phone", "user_id", "anonymous_id"]
        for kind in kinds:
            found = find_by_identity(conn, kind, ref, default_region=region)
            if found:
                return found
    console.print(f"[red]no customer matches {ref!r}[/red] (try an id, email, +phone or userId)")
    raise typer.Exit(1)


@customers_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="Customer id, email, phone (+E.164) or userId.")]) -> None:
    """Print a profile, its identities and why they belong together."""
    from doorstep.customers.queries import get_customer

    ctx = _ctx()
    customer_id = _find(ctx, ref)
    with ctx.read_engine.connect() as conn:
        customer = get_customer(conn, customer_id, events_limit=10)
    out.print(f"[bold]{customer.name or '(no name)'}[/bold]  {customer.id}")
    out.print(
        f"email {customer.email or '-'}  phone {customer.phone or '-'}  country {customer.country or '-'}"
    )
    if customer.merged_ids:
        out.print(f"merged from: {', '.join(customer.merged_ids)}")
    out.print("[bold]why these identities belong together[/bold]")
    for link in customer.identity_links:
        out.print(
            f"  {link.action:8} {link.kind}:{link.value}  {link.reason}", soft_wrap=True, highlight=False
        )
    for order in customer.orders:
        out.print(f"order {order.external_id}  {order.status}  {order.total} {order.currency}")


@customers_app.command("erase")
def erase(
    ref: Annotated[str, typer.Argument(help="Customer id, email, phone (+E.164) or userId.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a customer everywhere (right to erasure): profile, merged profiles, orders, messages, consents,
    timeline, and their calls in the inbound log. Cannot be undone."""
    from doorstep.customers.handlers import erase_customer

    ctx = _ctx()
    customer_id = _find(ctx, ref)
    if not yes:
        typer.confirm(f"Erase customer {customer_id} and everything about them?", abort=True)
    with ctx.uow() as uow:
        counts = erase_customer(customer_id, uow=uow, now=ctx.clock.now())
        uow.commit()
    console.print(
        f"[green]erased[/green] {customer_id}: {counts['profiles']} profile(s), {counts['identities']} identities, "
        f"{counts['log_events']} logged call(s)"
    )
