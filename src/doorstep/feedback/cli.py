"""`doorstep feedback ...`: review import and the topic classifier's measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out = Console()


def register(app: typer.Typer) -> None:
    feedback_app = typer.Typer(help="Feedback: review import and comment topics.", no_args_is_help=True)
    app.add_typer(feedback_app, name="feedback")

    @feedback_app.command("import-reviews")
    def import_reviews_cmd(
        file: Annotated[
            Path,
            typer.Argument(
                help="CSV with columns order_id, rating, comment, submitted_at, "
                "external_id (order_id is the shop's order number).",
                exists=True,
                dir_okay=False,
                readable=True,
            ),
        ],
    ) -> None:
        """Import reviews: good rows are stored (topic classified), bad rows are listed by line."""
        from doorstep.app import build_context
        from doorstep.feedback.handlers import import_reviews
        from doorstep.settings import get_settings

        ctx = build_context(get_settings())
        try:
            report = import_reviews(file.read_text(encoding="utf-8-sig"), uow=ctx.uow(), now=ctx.clock.now())
        finally:
            ctx.engine.dispose()
        console.print(
            f"[green]{report.stored} stored[/green], {report.duplicates} already imported, "
            f"[{'red' if report.errors else 'green'}]{len(report.errors)} bad row(s)[/]"
        )
        if report.errors:
            table = Table("line", "problem")
            for e in report.errors:
                table.add_row(str(e.line), e.message)
            out.print(table)
            raise typer.Exit(1)

    @feedback_app.command("evaluate-classifier")
    def evaluate_classifier() -> None:
        """Accuracy of the comment-topic classifier on its held-out labelled examples."""
        from doorstep.feedback.classifier import evaluate

        result = evaluate()
        table = Table("measure", "value")
        for key, value in result.items():
            table.add_row(key, f"{value:.1%}" if isinstance(value, float) else str(value))
        out.print(table)
