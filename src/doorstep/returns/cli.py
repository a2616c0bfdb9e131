"""`doorstep returns ...`: read and check the returns policy, see a return's steps."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out = Console()

returns_app = typer.Typer(help="Returns and exchanges: policy and return requests.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(returns_app, name="returns")


@returns_app.command("policy")
def show_policy(
    file: Annotated[
        Path | None, typer.Option("--file", help="A policy YAML to check instead of the configured one.")
    ] = None,
) -> None:
    """Print the returns policy (windows per category, non-returnable items, reasons), after checking it."""
    from doorstep.returns.model import load_policy
    from doorstep.settings import get_settings

    path = file or (Path(p) if (p := get_settings().extra.get("returns_policy_path")) else None)
    try:
        policy = load_policy(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        console.print(f"[red]the policy {path or '(packaged)'} is not valid:[/red] {exc}")
        console.print("Fix the file (see src/doorstep/returns/policy.yaml for the shape) and run this again.")
        raise typer.Exit(2) from exc
    table = Table(title=f"Return windows (default {policy.default_window_days:g} days from delivery)")
    for column in ("category", "window", "returnable", "condition"):
        table.add_column(column)
    for name, rule in sorted(policy.categories.items()):
        table.add_row(
            name, f"{rule.window_days:g} days", "yes" if rule.returnable else "no", rule.condition or ""
        )
    out.print(table)
    out.print(f"Non-returnable products: {', '.join(sorted(policy.non_returnable_products)) or 'none'}")
    out.print(
        f"Keep the item when it is worth less than the return postage ({policy.return_shipping_cost}); "
        f"courier pickup fee {policy.courier_pickup_fee}; manual review over {policy.manual_review_over or 'never'}"
    )
    reasons = Table(title="Reasons")
    reasons.add_column("code")
    reasons.add_column("customer sees")
    reasons.add_column("shop at fault")
    for code, label in policy.reasons.items():
        reasons.add_row(code, label, "yes" if code in policy.shop_fault_reasons else "")
    out.print(reasons)


@returns_app.command("check")
def check_item(
    category: Annotated[str, typer.Argument(help="The item's category, e.g. 'shoes/running'.")],
    delivered: Annotated[str, typer.Option(help="Delivery time, ISO 8601 (UTC if no zone).")],
    price: Annotated[str, typer.Option(help="Item price.")] = "20.00",
    reason: Annotated[str, typer.Option(help="Reason code, e.g. fit.too_small.")] = "changed_mind",
    condition: Annotated[str, typer.Option(help="unopened | as_new | used | damaged")] = "as_new",
    at: Annotated[str | None, typer.Option(help="When the customer asks (default: now), ISO 8601.")] = None,
) -> None:
    """Would the policy accept this return? Answers with the rule that decides."""
    from doorstep.errors import DoorstepError
    from doorstep.returns.handlers import policy as configured_policy
    from doorstep.returns.model import LineToReturn, check_request
    from doorstep.settings import get_settings

    def when(value: str) -> datetime:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    try:
        delivered_at = when(delivered)
        now = when(at) if at else datetime.now(UTC)
        line = LineToReturn(1, "item", "the item", category, 1, 1, 0, Decimal(price), condition)
        decision = check_request(
            configured_policy(get_settings()),
            lines=[line],
            reason_code=reason,
            resolution="refund",
            method=None,
            delivered_at=delivered_at,
            now=now,
        )
    except ValueError as exc:
        console.print(f"[red]bad input:[/red] {exc}")
        raise typer.Exit(2) from exc
    except DoorstepError as exc:
        out.print(f"[red]refused[/red] ({exc.extra.get('field', '')}): {exc.detail}")
        raise typer.Exit(1) from exc
    out.print(f"[green]accepted[/green]: method {decision.method}, refund {decision.refund_amount}")
    for note in decision.notes:
        out.print(f"  {note}")
