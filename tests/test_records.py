"""The journal's typed records read the rows journals hold today, and write them the same."""

import json
import os
import sqlite3

import pytest

from flowersort.base.records import MoveAction, MoveState, RunKind, Step, StepKind
from flowersort.safefs import identity
from flowersort.sorting.journal import Journal

# steps as the journal has stored them since it was written ([kind, path, details?])
OLD_ROWS = [
    ["tmp", "/t/Flowers/.flowersort-tmp-0123456789abcdef"],
    ["claim", "/t/Flowers/IMG_0001.jpg"],
    ["claimed", "/t/Flowers/IMG_0001.jpg", {"ino": 12, "size": 3, "mtime_ns": 4}],
    ["create", "/t/Flowers/IMG_0001.xmp", {"at": 1700000000000000000}],
    ["created", "/t/Flowers/IMG_0001.xmp"],
    ["unlink", "/t/Pictures/IMG_0001.jpg", {"kept": {"mode": 420}}],
    ["rollback", "/t/Pictures/IMG_0001.jpg"],
    ["restore", "/t/Pictures/IMG_0001.jpg"],
]


@pytest.mark.parametrize("row", OLD_ROWS, ids=[r[0] for r in OLD_ROWS])
def test_a_step_reads_and_writes_the_rows_of_today(row):
    step = Step.from_json(row)
    assert step.kind == StepKind(row[0]) and step.path == row[1]
    assert step.to_json() == row
    assert json.loads(json.dumps(step.to_json())) == row


@pytest.mark.parametrize(
    "item", [["tmp"], ["nothing", "/x"], [1, "/x"], ["tmp", 2], ["tmp", "/x", []], "tmp", None]
)
def test_a_step_that_is_not_one_is_refused(item):
    assert not Step.parses(item)
    with pytest.raises((TypeError, ValueError)):
        Step.from_json(item)


def test_the_enums_are_the_strings_the_journal_stores():
    assert [s.value for s in MoveState] == [
        "started", "done", "failed", "split", "rolled-back", "failed-clean", "damaged"
    ]  # fmt: skip
    assert [a.value for a in MoveAction] == ["move", "dedupe", "dedupe-sidecars"]
    assert [k.value for k in RunKind] == ["classify", "copy", "undo", "tag"]
    assert f"{MoveState.DONE}" == "done" and MoveState("done") is MoveState.DONE


def test_a_journaled_move_stores_its_steps_as_lists(tmp_path):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    src.mkdir()
    dest.mkdir()
    (src / "a.jpg").write_bytes(b"photo")
    journal = Journal(tmp_path / "state")
    run = journal.start_run(RunKind.CLASSIFY, src, dest)
    journal.transfer(run, [src / "a.jpg"], dest)
    journal.close()
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    state, action, steps = db.execute("SELECT state, action, steps FROM moves").fetchone()
    db.close()
    assert (state, action) == ("done", "move")
    kinds = [s[0] for s in json.loads(steps)]
    assert "claimed" in kinds and kinds[-1] == "unlink"  # linked: no temporary copy
    assert all(isinstance(s, list) and isinstance(s[1], str) for s in json.loads(steps))


def test_changed_is_an_oserror_with_the_message_of_before():
    e = identity.Changed(11, "a.jpg changed while being moved; left in place")
    assert isinstance(e, OSError) and e.strerror.endswith("left in place")


def test_a_move_cut_short_in_a_row_of_today_is_finished_by_recovery(tmp_path):
    """A row as the journal has always written it (raw SQL, steps as JSON lists): the
    source was linked to its final name and its removal had begun when the run died."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    src.mkdir()
    dest.mkdir()
    photo, final = src / "a.jpg", dest / "a.jpg"
    photo.write_bytes(b"photo")
    os.link(photo, final)
    st = os.lstat(final)
    claimed = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    steps = [["claim", str(final)], ["claimed", str(final), claimed], ["unlink", str(photo)]]
    journal = Journal(tmp_path / "state")
    run = journal.start_run(RunKind.CLASSIFY, src, dest)
    journal.db.execute(
        "INSERT INTO moves(run, sources, keep_source, state, action, steps) "
        "VALUES (?, ?, 0, 'started', 'move', ?)",
        (run, json.dumps([str(photo)]), json.dumps(steps)),
    )
    assert journal.recover() == 1
    state, finals = journal.db.execute("SELECT state, finals FROM moves").fetchone()
    journal.close()
    assert (state, json.loads(finals)) == ("done", [str(final)])
    assert not photo.exists() and final.read_bytes() == b"photo"
