"""The journal's vocabulary, typed: the kinds of run, the states and actions of a move, and
the steps safefs announces before it takes them. The values are what the journal stores
(journals written by earlier versions hold the same strings), so they never change."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """enum.StrEnum of Python 3.11: members are their values as strings."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


class RunKind(StrEnum):
    CLASSIFY = "classify"  # moves photos
    COPY = "copy"  # classify --copy-to
    UNDO = "undo"
    TAG = "tag"  # classify --tag: keywords written into sidecars (tagging.py)


class MoveState(StrEnum):
    """Where a journaled move is: recovery looks at STARTED and FAILED ones."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"  # raised an error: recovery looks again for anything it left
    SPLIT = "split"  # left in two places (safefs.GroupSplit): said by undo, never retried
    ROLLED_BACK = "rolled-back"  # an interrupted move undone by recovery
    FAILED_CLEAN = "failed-clean"  # a failed move recovery found (or made) clean
    DAMAGED = "damaged"  # its record did not parse: set aside, never acted on


class MoveAction(StrEnum):
    """What a journaled move was part of, for undo."""

    MOVE = "move"  # a move or copy (keep_source) of a photo and its sidecars
    DEDUPE = "dedupe"  # sources removed, their byte-identical twins (the finals) kept
    DEDUPE_SIDECARS = "dedupe-sidecars"  # a dedupe's sidecars moved by the twin


class StepKind(StrEnum):
    """A step safefs announces (note()) before it takes it."""

    TMP = "tmp"  # a temporary copy is made
    CLAIM = "claim"  # a final name is tried
    CLAIMED = "claimed"  # it was linked; details: its safefs.identity()
    CREATE = "create"  # without hard links, an empty file takes the name; details: at
    CREATED = "created"
    UNLINK = "unlink"  # a source is removed; for a dedupe, details: kept (its metadata)
    ROLLBACK = "rollback"  # a group that could not be removed whole is being put back
    RESTORE = "restore"  # a removed source gets its name back


@dataclass(frozen=True)
class Step:
    """One journaled step: stored as the JSON list [kind, path] or [kind, path, details]."""

    kind: StepKind
    path: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> list:
        if self.details:
            return [self.kind.value, self.path, self.details]
        return [self.kind.value, self.path]

    @classmethod
    def from_json(cls, item: list) -> Step:
        """A step as the journal stores it (ValueError for anything else)."""
        if not (isinstance(item, list) and len(item) in (2, 3)):
            raise ValueError(f"not a journal step: {item!r}")
        kind, path, *rest = item
        details = rest[0] if rest else {}
        if not isinstance(path, str) or not isinstance(details, dict):
            raise ValueError(f"not a journal step: {item!r}")
        return cls(StepKind(kind), path, details)

    @classmethod
    def parses(cls, item: object) -> bool:
        try:
            cls.from_json(item)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return True
