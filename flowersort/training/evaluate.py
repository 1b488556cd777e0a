"""Scoring a model on two labelled folders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowersort.base.errors import FlowersortError
from flowersort.model.file import Model
from flowersort.model.metrics import confusion, sweep
from flowersort.photos.archive import Labelled, OnSkip, Skips, labelled_photos
from flowersort.scoring.pipeline import score_photos


@dataclass
class Evaluation:
    threshold: float
    paths: list[str] = field(default_factory=list)
    truth: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)  # sub-folder relative to its class root
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def metrics(self) -> dict:
        predicted = np.array(self.scores) >= self.threshold
        return confusion(np.array(self.truth, bool), predicted)

    def misclassified(self) -> list[dict]:
        return [
            {"path": os.fsdecode(p), "flower": t, "score": round(s, 6)}
            for p, t, s in zip(self.paths, self.truth, self.scores)
            if (s >= self.threshold) != t
        ]

    def report_entries(self) -> list:
        from flowersort.report import Entry

        entries = [
            Entry(p, s, s >= self.threshold, "evaluated", truth=t)
            for p, t, s in zip(self.paths, self.truth, self.scores)
        ]
        return entries + [Entry(p, None, None, "skipped", reason) for p, reason in self.skipped]

    def sweep(self) -> list[dict]:
        return sweep(np.array(self.scores), np.array(self.truth, bool))

    def by_folder(self) -> dict[str, dict]:
        """Figures per (class, sub-folder), to see which kinds of photos fail."""
        groups: dict[str, list[int]] = {}
        for i, (t, folder) in enumerate(zip(self.truth, self.folders)):
            name = "flowers" if t else "noflowers"
            groups.setdefault(name if folder == "." else f"{name}/{folder}", []).append(i)
        out = {}
        for key, idx in sorted(groups.items()):
            truth = np.array(self.truth, bool)[idx]
            predicted = np.array(self.scores)[idx] >= self.threshold
            out[key] = {"n": len(idx), "errors": int(np.sum(truth != predicted))}
        return out


def evaluate(
    model: Model,
    flowers: Path,
    noflowers: Path,
    threshold: float | None = None,
    workers: int | None = None,
    on_skip: OnSkip | None = None,
    thumbnail: bool = False,
) -> Evaluation:
    result = Evaluation(model.threshold if threshold is None else threshold)
    skips = Skips(on_skip)
    photos: dict[str, Labelled] = {}

    def remember(photo: Labelled) -> str:
        photos[photo.path] = photo
        return photo.path

    labelled = labelled_photos(Path(flowers), Path(noflowers), skips)
    for scored in score_photos(model, map(remember, labelled), workers, thumbnail=thumbnail):
        path = os.fspath(scored.path)  # as remember gave it
        if scored.score is None:
            skips(path, scored.skip_reason)
            continue
        photo = photos[path]
        result.paths.append(path)
        result.truth.append(photo.flower)
        result.scores.append(scored.score)
        result.folders.append(os.path.relpath(os.path.dirname(path), photo.root))
    result.skipped = skips.found
    if not result.paths:
        raise FlowersortError("no readable photos in the two folders")
    return result
