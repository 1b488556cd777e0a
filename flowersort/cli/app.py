"""The `flowersort` command group: every command, and the entry point."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import shlex
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any
import click
from tqdm import tqdm
from flowersort import safefs
from flowersort.base import rights
from flowersort.base.errors import (
    EXIT_MEANING,
    ExitCode,
    FlowersortError,
    UnexpectedError,
    exit_codes_text,
)
from flowersort.base.outcomes import Action, Outcome, counted
from flowersort.model.features import MODES, FeatureConfig
from flowersort.model.file import default_model_path, load_model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND
from flowersort.photos.archive import VIDEO_SUFFIXES, display
from flowersort.photos.heic import MISSING as HEIC_MISSING
from flowersort.scoring.cache import open_score_cache
from flowersort.training.featcache import default_feature_cache
from flowersort.training.train import TrainConfig
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
