"""`flowersort corrections`: what flowersort learnt from the user's own moves."""

from __future__ import annotations

import json
import os

import click

from flowersort.base.errors import (
    FlowersortError,
)
from flowersort.base.outcomes import counted
from flowersort.cli.console import CliError, OneLineGroup, run_library
from flowersort.cli.options import CORRECTIONS_EXIT_CODES, json_option
from flowersort.photos.archive import display


@click.group(cls=OneLineGroup, epilog=CORRECTIONS_EXIT_CODES)
def corrections() -> None:
    """What flowersort learnt from you, kept by content (size and SHA-256).

    A photo flowersort moved into the target that you took back out, under any name and
    into any folder, is never moved again (a non-flower example for train
    --with-corrections); a photo you put into the target yourself, or sorted from the
    review folder into it, is a flower example. They live in corrections.sqlite beside the
    journal ($XDG_STATE_HOME/flowersort).
    """


@corrections.command("list", epilog=CORRECTIONS_EXIT_CODES)
@json_option("One JSON object a line per correction.")
def list_corrections(as_json):
    """List every correction: label, how it was learnt, where the photo was last seen."""
    from flowersort.sorting.corrections import KIND_TEXT, Store, weak_confirmations

    store = run_library(Store, dry_run=True)  # read only: listing writes nothing
    try:
        rows, weak = store.corrections(), sum(1 for _ in weak_confirmations(store))
    finally:
        store.close()
    for c in rows:
        if as_json:
            click.echo(json.dumps(c.to_json()))
        else:
            click.echo(f"{c.label}: {display(c.path)} ({KIND_TEXT[c.kind]}, {c.sha256[:12]})")
    if not as_json:
        vetoes = sum(c.label == "not-flower" for c in rows)
        click.echo(
            f"{counted(len(rows), 'correction')}: {counted(vetoes, 'not flower')}, "
            f"{counted(len(rows) - vetoes, 'flower')}; {counted(weak, 'photo')} moved by "
            "flowersort left in the target for 14 days or more"
        )


@corrections.command(epilog=CORRECTIONS_EXIT_CODES)
@click.argument("target")
def forget(target):
    """Forget the correction for TARGET: a photo (found by content), a SHA-256 prefix, or a
    folder (every photo in it now, or last seen there).

    A forgotten veto lets the photo be moved again on the next run; a forgotten flower
    still in the target is not learnt again.
    """
    from flowersort.sorting.corrections import Store, find, in_folder, unlabel

    store = run_library(Store)
    try:
        if os.path.isdir(target):
            found = run_library(in_folder, store, target)
            if not found:
                raise CliError(FlowersortError(f"no correction for a photo in {target}"))
        else:
            found = run_library(find, store, target)
            if not found:
                raise CliError(FlowersortError(f"no correction for {target}"))
            if len(found) > 1:
                raise CliError(FlowersortError(f"{target} matches {len(found)} corrections"))
        for c in found:
            run_library(unlabel, store, c, c.path.parent)
    finally:
        store.close()
    for c in found:
        click.echo(f"forgot: {c.label}: {display(c.path)}")
