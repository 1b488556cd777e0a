"""`flowersort train`: a model from two folders of examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowersort.cli.console import (
    OneLineUsageError,
    log,
    progress,
    report_once_per_run,
    report_skip,
    run_library,
    stops_on_signals,
)
from flowersort.cli.options import (
    DEFAULTS,
    FC,
    Options,
    config_from,
    example_folders,
    flowersort_command,
    int_list,
    json_option,
    logging_options,
    start_logging,
    workers_option,
)
from flowersort.model.features import MODES, FeatureConfig
from flowersort.model.metrics import DEFAULT_REVIEW_BAND
from flowersort.photos.archive import display
from flowersort.training.config import TrainConfig
from flowersort.training.featcache import default_feature_cache

if TYPE_CHECKING:
    from tqdm import tqdm

    from flowersort.training.learn import TrainResult

FEATURES = FeatureConfig()
# TrainConfig's fields no option sets: the benchmarks' ablations and settings kept fixed
# (docs/architecture.md, "Research knobs")
RESEARCH_ONLY = (
    "ema_decay",
    "hard_negative_weight",
    "lr_drop_factor",
    "lr_drop_patience",
    "mixup",
    "noflower_weight",
    "review_precision",
    "sorted_tiles",
    "view_crops",
)


def setting(defaults: object, flag: str, help: str, **kwargs: Any) -> Callable[[FC], FC]:
    """An option filling the settings field of its name (config_from), with the default
    of `defaults` (FEATURES or DEFAULTS), shown in --help; a list of numbers is given as
    numbers separated by commas."""
    default = getattr(defaults, flag.split("/")[0].removeprefix("--").replace("-", "_"))
    if isinstance(default, list):
        default, kwargs["callback"] = ",".join(map(str, default)), int_list
    return click.option(flag, default=default, show_default=True, help=help, **kwargs)


@flowersort_command("train")
@example_folders
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="model.npz",
    show_default=True,
    help="Where to write the model.",
)
@setting(
    FEATURES,
    "--mode",
    "Network input per tile: hue histograms split by saturation, the brightness of "
    "grey pixels, the directions of brightness edges, brightness textures and subject cues "
    "(sharpness, saturation and their contrast with the border tiles); the same without "
    "cues; without textures; without edges either; plain hue histograms; the raw hue "
    "matrix; the first with four more cues (two tile scales, brightness against the "
    "border); or the first with a 7th column, the hue of coloured pixels on brightness "
    "edges.",
    type=click.Choice(MODES),
)
@setting(FEATURES, "--image-size", "Photos are shrunk to this many pixels a side.")
@setting(FEATURES, "--grid", "Tiles per side of the tile map.")
@setting(
    FEATURES,
    "--bins",
    "Bins of each per-tile histogram (histogram modes; 2 to 256, at least 10 with textures).",
)
@setting(
    DEFAULTS,
    "--tile-layers",
    "The tile net, which turns each tile's matrix of histograms (bins x columns) into "
    "the few numbers of the tile map: one number per layer, the rows it makes. Each layer "
    "mixes one side of the matrix and turns it, so 32,8,8,1 on a 12 x 6 tile gives 6 x 32, "
    "then 32 x 8, then 8 x 8, then 8 x 1: 8 numbers per tile.",
)
@setting(
    DEFAULTS,
    "--head-layers",
    "The head net over the tile map (tiles x numbers per tile), in the same way: "
    "16,1,1 on a 36 x 8 map gives 8 x 16, then 16 x 1, then the score's 1 x 1 (so it must "
    "end with 1,1).",
)
@setting(DEFAULTS, "--epochs", "Most passes over the data.")
@setting(DEFAULTS, "--patience", "Stop after this many epochs without a better validation loss.")
@setting(DEFAULTS, "--batch-size", "Photos per training step (one weight update).")
@setting(
    DEFAULTS,
    "--learning-rate",
    "Step size of the optimiser (Adam): larger learns faster but less steadily.",
)
@setting(
    DEFAULTS,
    "--weight-decay",
    "Pull of every weight towards 0 (L2): larger keeps the nets simpler; 1e-3 scored "
    "fewest non-flowers near 1 on the held-out fold.",
    type=click.FloatRange(0),
)
@setting(
    DEFAULTS,
    "--val-fraction",
    "Share of the examples in the validation fold, which stops the nets' training; "
    "the threshold is chosen on it.",
)
@setting(DEFAULTS, "--members", "Nets trained, each from its own seed; the score is their mean.")
@setting(DEFAULTS, "--seed", "Same data and seed: same model.")
@setting(
    DEFAULTS,
    "--augment/--no-augment",
    "Random left-right flips, crops and small hue shifts while training.",
)
@setting(
    DEFAULTS,
    "--crops",
    "Augmented copies read per photo (random crops with small hue shifts).",
    type=click.IntRange(0),
)
@setting(
    DEFAULTS,
    "--flower-share",
    "Share of flower photos in the archives the model is meant for: the threshold is "
    "chosen for the precision it would have there.",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
)
@setting(
    DEFAULTS,
    "--min-precision",
    "The threshold is the lowest whose precision reaches this (at --flower-share) on "
    "the held-out fold, else the one with the best F0.5.",
    type=click.FloatRange(0, 1, min_open=True),
)
@click.option(
    "--feature-cache",
    "feature_cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of features remembered between training runs. "
    "Default: $XDG_CACHE_HOME/flowersort/features.",
)
@click.option("--no-feature-cache", is_flag=True, help="Decode every photo; remember no features.")
@click.option(
    "--freeze-tile-net",
    is_flag=True,
    help="Leave the tile net random and train only the head (the original design).",
)
@click.option(
    "--review-band",
    type=click.FloatRange(0, 1),
    help="Saved in the model: classify calls scores this close to the threshold borderline "
    "(sent to --review-to, else left in place). Default: with folds of whole sources, "
    "reaching down from the sure side as far as its photos stay half flowers on sources "
    f"the nets never saw; else {DEFAULT_REVIEW_BAND}.",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A CSV file with 'path' and 'source' columns (e.g. a data set's MANIFEST.csv; "
    "paths relative to its folder) saying where each example comes from. Default: each "
    "example's first subfolder below FLOWERS or NOFLOWERS. With 5 or more sources, the "
    "threshold and review band are chosen on scores of sources the nets never saw (folds "
    "of whole sources, each scored by nets trained on the others): one more training a "
    "fold (--source-folds).",
)
@setting(
    DEFAULTS,
    "--source-folds",
    "Folds of whole sources the threshold is chosen on; 0: on the held-out fold "
    "(one training, a threshold that holds on the examples' own sources).",
    type=click.IntRange(0),
)
@click.option(
    "--with-corrections",
    is_flag=True,
    help="Also learn from your corrections (see 'flowersort corrections'): photos you took "
    "out of the target folder as not flowers, photos you put into it as flowers.",
)
@click.option(
    "--marks",
    "marks_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A marks file saved from a report's 'save marks' button; may be repeated. The "
    "marks are also kept as corrections.",
)
@json_option("Print the training summary as JSON.")
@click.option("--force", is_flag=True, help="Replace the model file if it exists.")
@workers_option
@logging_options("reads")
@stops_on_signals
def train(**options: Any) -> None:
    """Learn flowers from two folders of example photos, FLOWERS and NOFLOWERS.

    Both nets are trained end to end. The examples are cut into folds; one fold is kept
    aside from every member net, each stops training when its loss there stops improving,
    and the decision threshold is chosen on that fold as the model scores it (the mean of
    the members, none of which learnt from it). With 5 or more sources (--sources, else
    subfolders), the threshold and review band are chosen instead on folds of whole
    sources, each scored by the same training on the others, so that the precision asked of
    the photos sure to be flowers (above the band) holds on sources the nets never saw.
    The model file holds every member; a photo's score is their mean probability.
    """
    start_logging(options)
    model_path = options["model_path"]
    if model_path.exists() and not options["force"]:
        message = f"{display(model_path)} exists: use --force to replace it, or another --model"
        raise OneLineUsageError(message)
    features, cfg = train_configs(options)
    result = learn(options, features, cfg)
    if options["as_json"]:
        out = {"model": str(model_path), "report": str(result.report_path)}
        click.echo(json.dumps({**out, "threshold": result.model.threshold, **result.model.summary}))
    else:
        tell_model(result, model_path, cfg.members, quiet=options["quiet"])


def train_configs(options: Options) -> tuple[FeatureConfig, TrainConfig]:
    """The photos' features and the training's settings; a usage error for a bad one."""
    try:
        features = config_from(FeatureConfig, options, unset=("binning",))
        tile_net = not options["freeze_tile_net"]
        cfg = config_from(TrainConfig, options, unset=RESEARCH_ONLY, train_tile_net=tile_net)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return features, cfg


def learn(options: Options, features: FeatureConfig, cfg: TrainConfig) -> TrainResult:
    """learn.train_model with a bar of the photos read, then one of the epochs trained."""
    from flowersort.training.learn import Corrections, ExampleFolders, TrainHooks, train_model

    no_cache, cache_folder = options["no_feature_cache"], options["feature_cache"]
    with ExitStack() as bars:
        reading = bars.enter_context(
            progress(options["quiet"], desc="reading photos", unit="photo")
        )
        try:
            return run_library(
                train_model,
                ExampleFolders(options["flowers"], options["noflowers"], options["sources_file"]),
                options["model_path"],
                features,
                cfg,
                corrections=Corrections(options["with_corrections"], tuple(options["marks_files"])),
                workers=options["workers"],
                cache_folder=None if no_cache else cache_folder or default_feature_cache(),
                hooks=TrainHooks(
                    on_skip=report_skip,
                    on_photo=lambda: reading.update(1),
                    on_epoch=epoch_bar(bars, reading, options["quiet"], cfg),
                ),
            )
        finally:  # also before "too few photos": they may all be HEICs without the extra
            report_once_per_run()


def epoch_bar(bars: ExitStack, reading: tqdm, quiet: bool, cfg: TrainConfig) -> Callable:
    """train_model's on_epoch: at the first epoch the photos are read, so the reading bar
    makes way for one of the epochs of every net."""
    training = None

    def on_epoch(epoch: int, stats: dict) -> None:
        nonlocal training
        if training is None:
            reading.close()
            total = cfg.epochs * cfg.members
            training = bars.enter_context(
                progress(quiet, total=total, desc="training", unit="epoch")
            )
        training.update(1)
        training.set_postfix(
            fold=stats.get("fold", "-"),
            net=f"{stats['member'] + 1}/{cfg.members}",
            loss=f"{stats['loss']:.3f}",
            val_acc=f"{stats['val_acc']:.3f}",
        )

    return on_epoch


def tell_model(result: TrainResult, model_path: Path, members: int, quiet: bool) -> None:
    """What was trained, and how to sort with it."""
    model, val = result.model, result.model.summary["validation"]
    tell = log.info if quiet else click.echo  # --quiet (cron): the log file only
    tell(
        f"model written to {model_path}: validation accuracy {val['accuracy']:.3f}, "
        f"F1 {val['f1']:.3f}, threshold {model.threshold:.3f}, "
        f"{members} nets, {model.summary['epochs_run']} epochs, "
        f"{model.summary['seconds']} s"
    )
    tell(f"validation report written to {result.report_path}")
    # classify's default is the shipped model: say how to use this one
    tell(f"to sort with it: flowersort classify SRC --model {display(model_path.absolute())}")
