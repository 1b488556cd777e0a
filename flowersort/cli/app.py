"""The `flowersort` command group: every command, and the entry point."""

from __future__ import annotations

import click

from flowersort.cli.ask import adapt, ask
from flowersort.cli.classify import classify
from flowersort.cli.console import OneLineGroup
from flowersort.cli.corrections import corrections
from flowersort.cli.evaluate import evaluate
from flowersort.cli.options import ALL_EXIT_CODES
from flowersort.cli.train import train
from flowersort.cli.undo import undo


@click.group(cls=OneLineGroup, epilog=ALL_EXIT_CODES)
@click.version_option(package_name="flowersort")
def cli() -> None:
    """Find the flower photos in a photo archive and move them into a folder.

    Teach it with two folders of examples (train), check it (evaluate), then let it sort
    an archive (classify). Start with classify --dry-run: it shows the plan and touches
    nothing.
    """


def main() -> None:
    cli()


for command in (train, evaluate, classify, undo, ask, adapt, corrections):
    cli.add_command(command)
