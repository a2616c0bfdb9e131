"""`doorstep assistant ...`: classify utterances, evaluate on a labelled CSV, retrain the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

assistant_app = typer.Typer(
    help="The order assistant's understanding: classify, evaluate, train.", no_args_is_help=True
)
console = Console(stderr=True)
out = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(assistant_app, name="assistant")


@assistant_app.command("classify")
def classify() -> None:
    """Read one utterance per line on stdin; write one JSON object per line: text, intent, confidence, entities."""
    from doorstep.clock import utcnow
    from doorstep.conversations.handlers import entity_rules
    from doorstep.conversations.nlu.classifier import understand
    from doorstep.settings import get_settings

    rules = entity_rules(get_settings())
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        result = understand(text, now=utcnow(), rules=rules)
        sys.stdout.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()


@assistant_app.command("eval")
def evaluate(
    file: Annotated[
        Path, typer.Argument(help="Labelled CSV with a header 'text,intent'.", exists=True, dir_okay=False)
    ],
) -> None:
    """Per-intent precision, recall and F1, in-scope accuracy and out-of-scope rates on a labelled CSV."""
    from doorstep.conversations.nlu.classifier import get_classifier, read_labelled
    from doorstep.conversations.nlu.evaluation import evaluate_rows

    try:
        rows = read_labelled(file)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    report = evaluate_rows(get_classifier(), rows)
    table = Table("intent", "precision", "recall", "F1", "support", title=f"{file} ({len(rows)} utterances)")
    for intent, m in report.per_intent.items():
        table.add_row(
            intent, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])
        )
    out.print(table)
    out.print(
        f"in-scope accuracy            {report.in_scope_accuracy:.3f}  ({report.in_scope_total} utterances)"
    )
    out.print(
        f"out-of-scope refused         {report.out_of_scope_refused:.3f}  ({report.out_of_scope_total} utterances)"
    )
    out.print(f"in-scope wrongly refused     {report.in_scope_refused:.3f}")
    out.print(f"macro F1                     {report.macro_f1:.3f}")


@assistant_app.command("train")
def train(
    data: Annotated[
        Path | None, typer.Option(help="Training CSV (text,intent); defaults to the shipped one.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Where to write the model; defaults to the shipped artifact.")
    ] = None,
) -> None:
    """Rebuild the intent model from the training CSV and write the artifact the assistant loads."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from doorstep.conversations.nlu.classifier import MODEL_PATH, TRAIN_CSV, IntentClassifier, read_labelled

    source = data or TRAIN_CSV
    target = output or MODEL_PATH
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(f"reading {source}", total=3)
        rows = read_labelled(source)
        bar.update(task, advance=1, description=f"fitting on {len(rows)} utterances")
        model = IntentClassifier.train(rows)
        bar.update(task, advance=1, description=f"writing {target}")
        model.save(target)
        bar.update(task, advance=1, description="done")
    console.print(
        f"[green]model written[/green] to {target} ({target.stat().st_size / 1024:.0f} KiB, "
        f"{len(model.labels)} intents)"
    )
