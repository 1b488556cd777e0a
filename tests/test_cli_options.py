"""Each command's options reach the library under the right name: every train option in
its TrainConfig or FeatureConfig field, classify's in SortOptions, ask's and adapt's in
theirs. And each command's --help lists the options it always had, in the same order
(the options are declared once, in cli/options.py, and filled into the settings by name)."""

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from flowersort.cli.app import cli
from flowersort.model.features import FeatureConfig
from flowersort.sorting.adapt import AdaptOptions, AskOptions
from flowersort.sorting.options import SortOptions, WalkOptions
from flowersort.training.config import TrainConfig

# train's options, each with a value other than its default, and where it must land:
# (arguments, "features" or "cfg", field, value there)
TRAIN_SETTINGS = [
    (["--mode", "hue-sat-hist"], "features", "mode", "hue-sat-hist"),
    (["--image-size", "64"], "features", "image_size", 64),
    (["--grid", "8"], "features", "grid", 8),
    (["--bins", "16"], "features", "bins", 16),
    (["--tile-layers", "8,2,1"], "cfg", "tile_layers", [8, 2, 1]),
    (["--head-layers", "4,1,1"], "cfg", "head_layers", [4, 1, 1]),
    (["--epochs", "7"], "cfg", "epochs", 7),
    (["--patience", "3"], "cfg", "patience", 3),
    (["--batch-size", "9"], "cfg", "batch_size", 9),
    (["--learning-rate", "0.01"], "cfg", "learning_rate", 0.01),
    (["--weight-decay", "0.002"], "cfg", "weight_decay", 0.002),
    (["--val-fraction", "0.25"], "cfg", "val_fraction", 0.25),
    (["--members", "1"], "cfg", "members", 1),
    (["--seed", "5"], "cfg", "seed", 5),
    (["--no-augment"], "cfg", "augment", False),
    (["--crops", "2"], "cfg", "crops", 2),
    (["--flower-share", "0.3"], "cfg", "flower_share", 0.3),
    (["--min-precision", "0.8"], "cfg", "min_precision", 0.8),
    (["--freeze-tile-net"], "cfg", "train_tile_net", False),
    (["--review-band", "0.05"], "cfg", "review_band", 0.05),
    (["--source-folds", "3"], "cfg", "source_folds", 3),
]


def invoke(*args) -> object:
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="flowersort")
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def training(monkeypatch, tmp_path) -> dict:
    """learn.train_model replaced: what train calls it with lands in the dict."""
    called: dict = {}

    def train_model(folders, model_path, feature_cfg, cfg, **kwargs):
        called.update(folders=(folders.flowers, folders.noflowers), model_path=model_path)
        called.update(sources_file=folders.sources_file, **kwargs)
        called.update(features=feature_cfg, cfg=cfg)
        summary = {"validation": {"accuracy": 1.0, "f1": 1.0}, "epochs_run": 1, "seconds": 0}
        model = SimpleNamespace(threshold=0.5, summary=summary)
        return SimpleNamespace(model=model, report_path=tmp_path / "report.html")

    monkeypatch.setattr("flowersort.training.learn.train_model", train_model)
    return called


def example_folders(tmp_path: Path) -> tuple[Path, Path]:
    flowers, noflowers = tmp_path / "flowers", tmp_path / "noflowers"
    flowers.mkdir()
    noflowers.mkdir()
    return flowers, noflowers


def test_every_train_option_lands_in_its_config_field(training, tmp_path):
    flowers, noflowers = example_folders(tmp_path)
    given = [arg for args, *_ in TRAIN_SETTINGS for arg in args]
    invoke("train", flowers, noflowers, "--model", tmp_path / "m.npz", *given, "--json")
    defaults = {"features": FeatureConfig(), "cfg": TrainConfig()}
    for args, config, name, value in TRAIN_SETTINGS:
        assert getattr(defaults[config], name) != value, f"{args}: give another value"
        assert getattr(training[config], name) == value, args
    # what no option sets keeps the library's default
    for config, settings in defaults.items():
        for field in dataclasses.fields(settings):
            if not any(c == config and name == field.name for _, c, name, _ in TRAIN_SETTINGS):
                assert getattr(training[config], field.name) == getattr(settings, field.name)


def test_every_config_field_train_has_an_option_for_is_checked_above():
    """A new train option named as a TrainConfig or FeatureConfig field is filled into it
    by name: it needs its row in TRAIN_SETTINGS."""
    fields = {f.name for c in (TrainConfig, FeatureConfig) for f in dataclasses.fields(c)}
    train = cli.commands["train"]
    by_name = {p.name for p in train.params} & fields
    assert by_name | {"train_tile_net"} == {name for *_, name, _ in TRAIN_SETTINGS}


def test_train_options_beside_the_configs_reach_train_model(training, tmp_path):
    from flowersort.training.learn import Corrections

    flowers, noflowers = example_folders(tmp_path)
    sources, marks = tmp_path / "MANIFEST.csv", tmp_path / "marks.json"
    sources.write_text("path,source\n")
    marks.write_text("{}")
    model, cache = tmp_path / "m.npz", tmp_path / "features"
    invoke(
        "train", flowers, noflowers, "--model", model, "--workers", 2, "--sources", sources,
        "--with-corrections", "--marks", marks, "--feature-cache", cache, "-q",
    )  # fmt: skip
    assert training["folders"] == (flowers, noflowers)
    assert training["model_path"] == model
    assert training["workers"] == 2
    assert training["sources_file"] == sources
    assert training["corrections"] == Corrections(True, (marks,))
    assert training["cache_folder"] == cache
    invoke("train", flowers, noflowers, "--model", model, "--force", "--no-feature-cache", "-q")
    assert training["cache_folder"] is None
    assert training["corrections"] == Corrections(False, ())
    assert training["cfg"] == TrainConfig()


@pytest.fixture
def sorting(monkeypatch) -> dict:
    """SortRun replaced by a run of no photos: the SortOptions classify gives it land in
    the dict."""
    called: dict = {}

    class SortRun:
        def __init__(self, model, src, options, cache=None, hooks=None):
            called.update(src=src, options=options, cache=cache)

        def __enter__(self):
            return iter(())

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("flowersort.sorting.sorter.SortRun", SortRun)
    return called


def test_classify_options_land_in_sort_options(sorting, tmp_path):
    src, dest, review = tmp_path / "archive", tmp_path / "Flowers", tmp_path / "Review"
    src.mkdir()
    invoke(
        "classify", src, "--move-to", dest, "--review-to", review, "--dry-run",
        "--keep-structure", "--threshold", 0.7, "--review-band", 0.1, "--on-conflict", "skip",
        "--wait", "--thumbnails", "--follow-symlinks", "--include-hidden", "--exclude", "a*",
        "--exclude", "b", "--workers", 2, "--no-cache", "-q",
    )  # fmt: skip
    walk = WalkOptions(include_hidden=True, follow_symlinks=True, exclude=("a*", "b"))
    assert sorting["options"] == SortOptions(
        dest=dest, copy=False, dry_run=True, threshold=0.7, review=review, review_band=0.1,
        on_conflict="skip", keep_structure=True, wait=True, workers=2, thumbnail=True,
        walk=walk,
    )  # fmt: skip
    assert sorting["src"] == src and sorting["cache"] is None
    invoke("classify", src, "--copy-to", dest, "--no-cache", "-q")
    assert sorting["options"] == SortOptions(dest=dest, copy=True)
    invoke("classify", src, "--tag", "Flowers", "--no-cache", "-q")
    assert sorting["options"] == SortOptions(tag="Flowers", review_tag="Flowers?")
    invoke("classify", src, "--tag", "F", "--review-tag", "R", "--cache", tmp_path / "c.db", "-q")
    assert sorting["options"] == SortOptions(tag="F", review_tag="R")
    assert sorting["cache"] is not None


def test_ask_and_adapt_options_land_in_theirs(monkeypatch, tmp_path):
    called: dict = {}

    def ask(model, src, dest, review, n, options):
        called.update(ask=(src, dest, review, n), options=options)
        yield from ()

    def adapt(model, src, dest, review, out, *, on_skip, source, options):
        called.update(adapt=(src, dest, review, out), options=options)
        return SimpleNamespace(flowers=1, noflowers=1, seconds=0.0, moves=None)

    monkeypatch.setattr("flowersort.sorting.adapt.ask", ask)
    monkeypatch.setattr("flowersort.sorting.adapt.adapt", adapt)
    src, dest, review = tmp_path / "archive", tmp_path / "Flowers", tmp_path / "Review"
    src.mkdir()
    invoke(
        "ask", src, "--move-to", dest, "--review-to", review, "-n", 3, "--dry-run",
        "--exclude", "x", "--wait", "--workers", 2, "-q",
    )  # fmt: skip
    assert called["ask"] == (src, dest, review, 3)
    asked = dataclasses.replace(called["options"], cache=None)
    assert asked == AskOptions(dry_run=True, workers=2, exclude=("x",), wait=True)
    out = tmp_path / "adapted.npz"
    invoke("adapt", src, "--move-to", dest, "--out", out, "--dry-run", "--workers", 3, "-q")
    assert called["adapt"] == (src, dest, None, out)
    assert called["options"] == AdaptOptions(dry_run=True, workers=3)


# each command's --help before the options moved to cli/options.py: its usage line and
# the options it lists, in order
HELP = {
    "train": (
        "FLOWERS NOFLOWERS",
        "--model --mode --image-size --grid --bins --tile-layers --head-layers --epochs "
        "--patience --batch-size --learning-rate --weight-decay --val-fraction --members "
        "--seed --augment --no-augment --crops --flower-share --min-precision --feature-cache "
        "--no-feature-cache --freeze-tile-net --review-band --sources --source-folds "
        "--with-corrections --marks --json --force --workers -q --quiet -v --verbose "
        "--log-file --help",
    ),
    "evaluate": (
        "FLOWERS NOFLOWERS",
        "--model --threshold --json --sweep --by-folder --report --workers -q --quiet -v "
        "--verbose --log-file --help",
    ),
    "classify": (
        "SRC",
        "--move-to --copy-to --tag --review-tag --dry-run --keep-structure --model "
        "--threshold --review-to --review-band --json --on-conflict --wait --thumbnails "
        "--no-thumbnails --cache --no-cache --report --follow-symlinks --include-hidden "
        "--exclude --workers --run-as -q --quiet -v --verbose --log-file --help",
    ),
    "undo": (
        "[RUN]",
        "--list --dry-run --wait --json --run-as -q --quiet -v --verbose --log-file --help",
    ),
    "ask": (
        "SRC",
        "--move-to --review-to -n --count --dry-run --model --exclude --wait --json --workers "
        "--run-as -q --quiet -v --verbose --log-file --help",
    ),
    "adapt": (
        "SRC",
        "--move-to --review-to --model --out --dry-run --json --workers -q --quiet -v "
        "--verbose --log-file --help",
    ),
    "corrections": ("COMMAND [ARGS]...", "--help"),
    "corrections list": ("", "--json --help"),
    "corrections forget": ("TARGET", "--help"),
}

OPTION = re.compile(r"^  (?:(-\w), )?(--[\w-]+)(?: / (--[\w-]+))?", re.MULTILINE)


@pytest.mark.parametrize("command", HELP)
def test_help_lists_the_options_it_always_had(command):
    text = invoke(*command.split(), "--help").output
    arguments, options = HELP[command]
    assert text.splitlines()[0] == f"Usage: flowersort {command} [OPTIONS] {arguments}".rstrip()
    listed = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    names = [name for match in OPTION.finditer(listed) for name in match.groups() if name]
    assert names == options.split()


def test_a_setting_no_option_gives_is_a_mistake_not_a_silent_default():
    """An option renamed would leave its field at the default: config_from says so."""
    from flowersort.cli.options import config_from
    from flowersort.sorting.options import WalkOptions

    given = {"include_hidden": True, "follow_symlinks": False, "exclude": ()}
    assert config_from(WalkOptions, given).include_hidden is True
    renamed = {"hidden": True, "follow_symlinks": False, "exclude": ()}
    with pytest.raises(TypeError, match="include_hidden"):
        config_from(WalkOptions, renamed)
    assert config_from(WalkOptions, renamed, unset=("include_hidden",)).include_hidden is False
