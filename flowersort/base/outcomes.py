"""What happened to each photo: one typed record per photo, for the CLI, --json, the log
and the report."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


def counted(n: int, noun: str) -> str:
    """'1 photo', '2 photos', '1 not flower': a count with its noun (its last word) in
    the singular or the plural."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Action(str, Enum):
    """What a run did with a photo. The values are the --json "action" strings (a contract)."""

    # in the order the summary line counts them
    MOVED = "moved"
    COPIED = "copied"
    DEDUPLICATED = "deduplicated"  # a byte-identical twin was in the target: source removed
    ALREADY_THERE = "already-there"  # an earlier run's copy is at the target, unchanged
    WOULD_MOVE = "would-move"
    WOULD_COPY = "would-copy"
    WOULD_DEDUPLICATE = "would-deduplicate"
    REVIEW = "review"  # a borderline score: moved into the review folder
    WOULD_REVIEW = "would-review"
    BORDERLINE = "borderline"  # a borderline score, no review folder: left in place
    VETOED = "vetoed"  # kept where the user put it back earlier
    RESTORED = "restored"  # undo: back where it was
    REMOVED_COPY = "removed-copy"  # undo of a copy
    WOULD_RESTORE = "would-restore"
    WOULD_REMOVE_COPY = "would-remove-copy"
    TAGGED = "tagged"  # classify --tag: the keyword written into the photo's sidecar
    WOULD_TAG = "would-tag"
    ALREADY_TAGGED = "already-tagged"  # the sidecar has the keyword already
    UNTAGGED = "untagged"  # undo of a tag run: the keyword taken out again
    WOULD_UNTAG = "would-untag"
    NOT_TAGGED = "not-tagged"  # undo of a tag run: the keyword was gone already
    KEPT = "kept"
    SKIPPED = "skipped"  # not a usable photo
    FAILED = "failed"  # a move (or a move back) that could not be done
    NOT_ATTEMPTED = "not-attempted"  # the target was already full

    def __str__(self) -> str:
        return self.value

    @property
    def words(self) -> str:
        """'not attempted': the value as it reads in a sentence."""
        return self.value.replace("-", " ")

    @property
    def changed_files(self) -> bool:
        """The files moved, were copied or removed: logged with where they went."""
        return self in CHANGED_FILES

    @property
    def puts_back(self) -> bool:
        """An undo's action: the photo goes from target back to source."""
        return self in PUTS_BACK

    @property
    def is_failure(self) -> bool:
        return self in (Action.FAILED, Action.NOT_ATTEMPTED)


CHANGED_FILES = frozenset(
    {
        Action.MOVED,
        Action.COPIED,
        Action.DEDUPLICATED,
        Action.REVIEW,
        Action.RESTORED,
        Action.REMOVED_COPY,
        Action.TAGGED,
        Action.UNTAGGED,
    }
)
PUTS_BACK = frozenset(
    {Action.RESTORED, Action.REMOVED_COPY, Action.WOULD_RESTORE, Action.WOULD_REMOVE_COPY}
)


@dataclass
class Outcome:
    """What happened to one photo.

    source: where the photo was (for undo: where it goes back to); target: where it went
    or would go (for already-there and deduplicated: its twin; for undo: where it came
    back from); reason: why it was skipped, failed or vetoed; note: what the decoder said
    ("decoded in part (Corrupt JPEG data: ...)"); score and flower are None for undo and
    for photos that could not be read."""

    source: str | Path
    action: Action
    score: float | None = None
    flower: bool | None = None
    target: str = ""
    sidecars: list[str] = field(default_factory=list)  # where they went (undo: came back)
    reason: str = ""
    note: str = ""
    private_by_folder: bool = False  # failed: the target would expose it (PrivateByFolder)
    skipped_before: bool = False  # skipped for a lasting reason on an earlier run, unchanged
    keyword: str = ""  # a tag run's: the keyword written (or to be, or taken out)

    @property
    def moved_into_target(self) -> bool:
        """The photo now lives at target (its report card shows it from there)."""
        return self.action in (Action.MOVED, Action.DEDUPLICATED, Action.REVIEW)

    def to_json(self) -> dict:
        """The --json line: "detail" is the target, else the reason (a contract); a name
        that is not UTF-8 (a Latin-1 é) also comes as "path_bytes", its bytes in base64, as
        "path" can only hold it as a lone surrogate ("\udce9"), which jq turns into U+FFFD; a target
        that is not UTF-8 likewise as "detail_bytes"."""
        score = None if self.score is None else round(self.score, 6)
        row = {
            "path": os.fsdecode(self.source),
            "score": score,
            "flower": self.flower,
            "action": self.action.value,
            "detail": self.target or self.reason,
            "sidecars": [os.fsdecode(s) for s in self.sidecars],
            "note": self.note,
        }
        if self.keyword:  # a tag run's lines only: the keys of the others stay as they are
            row["keyword"] = self.keyword
        for key, name in (("path", self.source), ("detail", self.target)):
            raw = os.fsencode(name)  # the target (where it went) is a name too: detail_bytes
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                row[f"{key}_bytes"] = base64.b64encode(raw).decode("ascii")
        return row
