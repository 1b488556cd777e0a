"""The train command's whole job as one call: read the examples (with the user's
corrections and report marks), fit the nets, write the model file and the report of its
held-out folds."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowersort.base.errors import FlowersortError
from flowersort.base.outcomes import counted
from flowersort.model.features import FeatureConfig
from flowersort.model.file import Model, library_versions
from flowersort.photos.archive import OnSkip
from flowersort.report import Entry, write_report
from flowersort.scoring.pipeline import default_workers, scan
from flowersort.sorting.corrections import Store
from flowersort.sorting.marks import Example, training_examples
from flowersort.training.config import Progress, TrainConfig
from flowersort.training.crossval import FitDetails
from flowersort.training.examples import Examples, check_example_folders
from flowersort.training.examples import load_examples as read_examples
from flowersort.training.sources import photo_sources, read_sources
from flowersort.training.train import fit

log = logging.getLogger("flowersort")


@dataclass
class TrainResult:
    model: Model
    examples: Examples
    report_path: Path  # the held-out folds' contact sheet
    corrections: dict[str, int] | None  # flowers / noflowers learnt from the user, if asked


@dataclass
class Corrections:
    """What train folds in besides the example folders."""

    stored: bool = False  # --with-corrections: the corrections learnt by classify
    marks_files: tuple[Path, ...] = ()  # --marks: files saved from a report


@dataclass
class ExampleFolders:
    """What train learns from: FLOWERS and NOFLOWERS, and the file saying where each photo
    comes from, if given (see flowersort.training.sources)."""

    flowers: Path
    noflowers: Path
    sources_file: Path | None = None


@dataclass
class TrainHooks:
    """Whom train_model tells as it goes; None: no one."""

    on_skip: OnSkip | None = None  # each file skipped, and why
    on_photo: Callable[[], None] | None = None  # each file read
    on_epoch: Progress | None = None  # each epoch of each net


def train_model(
    folders: ExampleFolders,
    model_path: Path,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    *,
    corrections: Corrections | None = None,
    workers: int | None = None,
    cache_folder: Path | None = None,
    hooks: TrainHooks | None = None,
) -> TrainResult:
    """Train on FLOWERS and NOFLOWERS and write the model to model_path, and beside it
    MODEL.validation.html: the held-out fold, each photo scored by the model (the mean of
    its members, none of which learnt from it). Each photo's source (folders.sources_file,
    else its subfolder: see flowersort.training.sources) lets the threshold and the review
    band be chosen on folds of whole sources (TrainConfig.source_folds)."""
    hooks = hooks or TrainHooks()
    flowers, noflowers = folders.flowers, folders.noflowers
    check_example_folders(flowers, noflowers)
    listed = None  # read before the photos: a bad sources file stops train before any
    if folders.sources_file is not None:
        listed = read_sources(folders.sources_file)
    examples = read_examples(
        flowers,
        noflowers,
        feature_cfg,
        hooks.on_skip,
        workers,
        on_photo=hooks.on_photo,
        copies=cfg.copies,
        cache_folder=cache_folder,
    )
    learnt = None
    if corrections and (corrections.stored or corrections.marks_files):
        examples, learnt = _add_corrections(
            examples, corrections, feature_cfg, cfg, workers, hooks.on_skip or _ignore
        )
    n = len(examples.y)
    log.info("%d photo%s read, %d skipped", n, "" if n == 1 else "s", len(examples.skipped))
    warn_if_swapped(examples, flowers, noflowers, workers)
    sources = photo_sources(examples.paths, [flowers, noflowers], listed)
    _log_sources(sources, cfg)
    model, fitted = fit(
        examples.x,
        examples.y,
        feature_cfg,
        cfg,
        hooks.on_epoch,
        examples.augmented,
        workers,
        examples.paths,
        sources,
    )
    model.summary["skipped"] = len(examples.skipped)
    model.summary["versions"] = library_versions()
    if learnt is not None:
        model.summary["corrections"] = learnt
    model.save(model_path)
    report_path = _write_validation_report(model, model_path, examples, fitted, workers)
    return TrainResult(model, examples, report_path, learnt)


def _log_sources(sources: np.ndarray, cfg: TrainConfig) -> None:
    """Say what the threshold will be chosen on: folds of whole sources, or not."""
    if cfg.source_folds:
        log.info(
            "%d sources: the threshold is chosen on %s",
            len(set(sources)),
            f"{cfg.source_folds} folds of whole sources"
            if len(set(sources)) >= cfg.source_folds
            else "the held-out fold (too few sources for folds of whole sources)",
        )


def _write_validation_report(
    model: Model, model_path: Path, examples: Examples, fitted: FitDetails, workers: int | None
) -> Path:
    """MODEL.validation.html beside the model: the held-out fold as the model scores it."""
    report_path = model_path.with_name(model_path.stem + ".validation.html")
    entries = [
        Entry(
            examples.paths[i],
            float(s),
            bool(s >= model.threshold),
            "validation",
            truth=bool(examples.y[i] > 0.5),
        )
        for i, s in zip(fitted.val_idx, fitted.val_scores)
    ]
    title = f"flowersort train: held-out fold ({model_path})"
    write_report(report_path, entries, model, title, workers or default_workers())
    return report_path


SWAP_SAMPLE = 16  # photos of each folder the shipped model scores: about a second


def warn_if_swapped(
    examples: Examples, flowers: Path, noflowers: Path, workers: int | None = None
) -> None:
    """Folders given the wrong way round train a model that is just as sure, the wrong way
    (its validation accuracy is as high): the shipped model scoring a sample of FLOWERS
    below one of NOFLOWERS says so before the training starts."""
    from flowersort.model.file import default_model_path, load_model
    from flowersort.scoring.pipeline import score_photos

    try:
        shipped = load_model(default_model_path())
    except FlowersortError:
        return  # a checkout without models/: nothing to compare with
    medians = []
    for label in (1.0, 0.0):
        paths = [Path(p) for p, y in zip(examples.paths, examples.y) if y == label]
        scored = score_photos(shipped, paths[:SWAP_SAMPLE], workers)
        scores = [s.score for s in scored if s.score is not None]
        if not scores:
            return
        medians.append(float(np.median(scores)))
    if medians[0] < medians[1]:
        log.warning(
            "warning: the shipped model scores the photos of %s lower than those of %s "
            "(median %.3f against %.3f): are the two folders the wrong way round? "
            "(train FLOWERS NOFLOWERS)",
            flowers,
            noflowers,
            *medians,
        )


def _add_corrections(
    examples: Examples,
    corrections: Corrections,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    workers: int | None,
    on_skip: OnSkip,
) -> tuple[Examples, dict[str, int]]:
    """The training examples with the user's corrections and marks folded in."""
    store = Store()
    try:
        found = training_examples(
            store, list(corrections.marks_files), on_skip, stored=corrections.stored
        )
    finally:
        store.close()
    flowers = sum(e.label == "flower" for e in found)
    noflowers = counted(len(found) - flowers, "not flower")
    log.info("corrections: %s, %s", counted(flowers, "flower"), noflowers)
    examples = with_corrections(examples, found, feature_cfg, on_skip, workers, cfg.copies)
    return examples, {"flowers": flowers, "noflowers": len(found) - flowers}


def _ignore(path: str, reason: str) -> None:
    pass


def with_corrections(
    examples: Examples,
    corrections: list[Example],
    cfg: FeatureConfig,
    on_skip: OnSkip,
    workers: int | None = None,
    copies: int = 0,
) -> Examples:
    """The example folders' photos plus the corrected ones (not flowers as 0, flowers as
    1); a corrected photo that is already an example takes its corrected label."""
    index = {os.path.realpath(p): i for i, p in enumerate(examples.paths)}
    y = examples.y.copy()
    extra: list[Example] = []
    for ex in corrections:
        i = index.get(os.path.realpath(ex.path))
        if i is None:
            extra.append(ex)
        else:
            y[i] = float(ex.label == "flower")
    xs, ys, paths, skipped = [], [], [], list(examples.skipped)
    for photo, ex in zip(scan([e.path for e in extra], cfg, workers, copies=copies), extra):
        path = photo.path
        if photo.skipped:
            skipped.append((os.fspath(path), photo.skip_reason))
            on_skip(os.fspath(path), photo.skip_reason)
            continue
        assert photo.features is not None  # not skipped, and scan was given no scores
        xs.append(photo.features)
        ys.append(float(ex.label == "flower"))
        paths.append(os.fspath(path))
    if not xs:
        return Examples(examples.x, y, examples.paths, skipped, examples.augmented)
    x = np.stack(xs)
    augmented = examples.augmented
    if copies:
        x, augmented = x[:, 0], np.concatenate([augmented, x[:, 1:]])
    return Examples(
        np.concatenate([examples.x, x]),
        np.concatenate([y, ys]),
        examples.paths + paths,
        skipped,
        augmented,
    )
