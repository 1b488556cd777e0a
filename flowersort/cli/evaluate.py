"""`flowersort evaluate`: a model scored on two labelled folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from flowersort.base.errors import (
    exit_codes_text,
)
from flowersort.cli.console import (
    OneLineCommand,
    log,
    report_once_per_run,
    report_skip,
    run_library,
    setup_logging,
)
from flowersort.cli.options import (
    COMMAND_EXIT_CODES,
    logging_options,
    model_option,
    open_model,
    report_option,
    workers_option,
)
from flowersort.cli.output import write_html
from flowersort.model.file import default_model_path
from flowersort.photos.archive import display


@click.command(
    cls=OneLineCommand, epilog=exit_codes_text(COMMAND_EXIT_CODES["evaluate"], "evaluate")
)
@click.argument("flowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("noflowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--sweep", is_flag=True, help="Also show precision and recall at several thresholds.")
@click.option("--by-folder", is_flag=True, help="Also show the errors per sub-folder.")
@report_option
@workers_option
@logging_options("reads")
def evaluate(
    flowers,
    noflowers,
    model_path,
    threshold,
    as_json,
    sweep,
    by_folder,
    report_path,
    workers,
    quiet,
    verbose,
    log_file,
):
    """Measure the model on labelled folders FLOWERS and NOFLOWERS.

    Prints accuracy, precision, recall, F1, the confusion counts and the misclassified
    files.
    """
    from flowersort.training.evaluate import evaluate as run_evaluation

    setup_logging(quiet, verbose, log_file)
    model = open_model(model_path)
    try:
        result = run_library(
            run_evaluation, model, flowers, noflowers, threshold, workers, report_skip
        )
    finally:  # also before "no readable photos": they may all be HEICs without the extra
        report_once_per_run()
    if report_path:
        write_html(
            report_path,
            result.report_entries(),
            model,
            f"flowersort evaluate {flowers} {noflowers}",
            workers,
        )
        log.info("report written to %s", report_path)
    m = result.metrics()
    wrong = result.misclassified()
    if as_json:
        out = {
            **m,
            "misclassified": wrong,
            "threshold": result.threshold,
            "skipped": len(result.skipped),
            "model": os.fsdecode(model_path or default_model_path()),
        }
        if sweep:
            out["sweep"] = result.sweep()
        if by_folder:
            out["by_folder"] = result.by_folder()
        click.echo(json.dumps(out))
        return
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
    for row in wrong:
        kind = "missed flower" if row["flower"] else "false flower"
        click.echo(f"{kind}: {display(row['path'])} (score {row['score']:.3f})")
