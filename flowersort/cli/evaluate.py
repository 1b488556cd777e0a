"""`flowersort evaluate`: a model scored on two labelled folders."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from flowersort.cli.console import log, report_once_per_run, report_skip, run_library
from flowersort.cli.options import (
    Options,
    example_folders,
    flowersort_command,
    json_option,
    logging_options,
    model_option,
    open_model,
    report_option,
    start_logging,
    threshold_option,
    workers_option,
)
from flowersort.cli.output import write_html
from flowersort.model.file import default_model_path
from flowersort.photos.archive import display

if TYPE_CHECKING:
    from flowersort.training.evaluate import Evaluation


@flowersort_command("evaluate")
@example_folders
@model_option
@threshold_option
@json_option("Print one JSON object.")
@click.option("--sweep", is_flag=True, help="Also show precision and recall at several thresholds.")
@click.option("--by-folder", is_flag=True, help="Also show the errors per sub-folder.")
@report_option
@workers_option
@logging_options("reads")
def evaluate(**options: Any) -> None:
    """Measure the model on labelled folders FLOWERS and NOFLOWERS.

    Prints accuracy, precision, recall, F1, the confusion counts and the misclassified
    files.
    """
    from flowersort.training.evaluate import evaluate as run_evaluation

    start_logging(options)
    model = open_model(options["model_path"])
    flowers, noflowers, workers = options["flowers"], options["noflowers"], options["workers"]
    try:
        result = run_library(
            run_evaluation, model, flowers, noflowers, options["threshold"], workers, report_skip
        )
    finally:  # also before "no readable photos": they may all be HEICs without the extra
        report_once_per_run()
    if options["report_path"]:
        title = f"flowersort evaluate {flowers} {noflowers}"
        write_html(options["report_path"], result.report_entries(), model, title, workers)
        log.info("report written to %s", options["report_path"])
    if options["as_json"]:
        click.echo(json.dumps(evaluation_json(result, options)))
    else:
        show_evaluation(result, options["sweep"], options["by_folder"])


def evaluation_json(result: Evaluation, options: Options) -> dict[str, Any]:
    """--json: the metrics, the photos it got wrong, and the --sweep and --by-folder rows."""
    out = {
        **result.metrics(),
        "misclassified": result.misclassified(),
        "threshold": result.threshold,
        "skipped": len(result.skipped),
        "model": os.fsdecode(options["model_path"] or default_model_path()),
    }
    if options["sweep"]:
        out["sweep"] = result.sweep()
    if options["by_folder"]:
        out["by_folder"] = result.by_folder()
    return out


def show_evaluation(result: Evaluation, sweep: bool, by_folder: bool) -> None:
    m = result.metrics()
    click.echo(
        f"accuracy {m['accuracy']:.3f}  precision {m['precision']:.3f}  "
        f"recall {m['recall']:.3f}  F1 {m['f1']:.3f}  (threshold {result.threshold:.3f})"
    )
    click.echo(
        f"tp {m['tp']}  fp {m['fp']}  tn {m['tn']}  fn {m['fn']}  skipped {len(result.skipped)}"
    )
    if sweep:
        click.echo("threshold  precision  recall  accuracy")
        for row in result.sweep():
            click.echo(
                f"{row['threshold']:9.2f}  {row['precision']:9.3f}  {row['recall']:6.3f}"
                f"  {row['accuracy']:8.3f}"
            )
    if by_folder:
        for folder, row in result.by_folder().items():
            click.echo(f"{folder}: {row['errors']} wrong of {row['n']}")
    for row in result.misclassified():
        kind = "missed flower" if row["flower"] else "false flower"
        click.echo(f"{kind}: {display(row['path'])} (score {row['score']:.3f})")
