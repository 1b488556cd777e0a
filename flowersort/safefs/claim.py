"""Final names claimed for a group only by an operation that fails if the name exists
(``os.link``, else ``O_CREAT|O_EXCL``), never by check-then-rename: all of them or none."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from pathlib import Path

from flowersort.base.records import StepKind
from flowersort.safefs import seams
from flowersort.safefs.identity import identity
from flowersort.safefs.seams import Note

NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.ENOSYS)  # link() refused: exFAT, FAT


def claim_first_free(
    stand_ins: list[Path],
    folder: Path,
    candidates: Iterable[list[str]],
    note: Note,
    temporaries: bool = False,
) -> list[Path]:
    """Link every stand-in to its name, for the first candidate list whose names are all
    free; a clash gives back the names this try took and moves on to the next list.

    A folder without hard links (exFAT, FAT: link() is refused) takes each name with an
    empty file made with O_CREAT|O_EXCL instead, all of the group's names first, then
    renames each of our `temporaries` over its own empty file. Such a folder may ignore
    case: 'img.jpg' then clashes with 'IMG.JPG' and gets a new number like any clash.
    """
    names_left = iter(candidates)
    names = next(names_left, None)
    without_links = False
    while names is not None:
        claimed: list[Path] = []
        try:
            for stand_in, name in zip(stand_ins, names):
                target = folder / name
                if without_links:
                    note(StepKind.CREATE, path=target, at=time.time_ns())
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    claimed.append(target)
                    note(StepKind.CREATED, path=target)
                    continue
                note(StepKind.CLAIM, path=target)
                seams.link(stand_in, target)
                claimed.append(target)  # before the note: if noting fails, it is still undone
                note(StepKind.CLAIMED, path=target, **identity(target))
            if without_links:
                for stand_in, target in zip(stand_ins, claimed):
                    seams.rename(stand_in, target)  # over the empty file this move made
                    note(StepKind.CLAIMED, path=target, **identity(target))
            return claimed
        except FileExistsError:
            for target in claimed:  # our own links or empty files
                seams.remove(target)
            taken = [n.casefold() for n in names[: len(claimed)]]
            if names[len(claimed)].casefold() in taken:
                raise OSError(
                    errno.EEXIST, f"{folder} ignores case, and the group's names differ only by it"
                ) from None
            names = next(names_left, None)
        except OSError as e:
            for target in claimed:
                seams.remove_quietly(target)
            if temporaries and not without_links and not claimed and e.errno in NO_LINKS:
                without_links = True  # the same names again, taken the other way
                continue
            raise
        except BaseException:
            for target in claimed:
                seams.remove_quietly(target)
            raise
    raise FileExistsError(errno.EEXIST, "no free name", str(folder))
