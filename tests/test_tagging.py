"""A tag run's side effects (flowersort.sorting.tagging): journaled keyword writes, undo that takes
only our keyword out, vetoes and hand tags learnt from the sidecars."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowersort.base.outcomes import Action
from flowersort.photos import xmp, xmp_splice, xmp_write
from flowersort.sorting import tagging, tagjournal
from flowersort.sorting.corrections import Store
from flowersort.sorting.journal import Journal
from flowersort.sorting.state import state_dir
from tests.test_xmp import DIGIKAM


@pytest.fixture
def album(tmp_path):
    folder = tmp_path / "Pictures" / "2020 Rome"
    folder.mkdir(parents=True)
    for name in ("IMG_0001.jpg", "IMG_0002.jpg"):
        (folder / name).write_bytes(b"\xff\xd8 photo " + name.encode() + b" \xff\xd9")
    (folder / "IMG_0002.jpg.xmp").write_bytes(DIGIKAM)
    return folder


def tag_all(album: Path, dry_run: bool = False, review: bool = False) -> list:
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=dry_run)
    try:
        return [tagger.tag(str(p), 0.99, True, review=review) for p in sorted(album.glob("*.jpg"))]
    finally:
        tagger.close()


def undo_last() -> list:
    journal = Journal(state_dir())
    try:
        run = tagjournal.tag_runs(journal)[-1].id
        return list(tagjournal.undo_tags(journal, run))
    finally:
        journal.close()


def test_a_run_tags_then_a_second_adds_nothing_and_undo_takes_only_ours(album):
    photos = {p: p.read_bytes() for p in album.glob("*.jpg")}
    first = tag_all(album)
    assert [o.action for o in first] == [Action.TAGGED, Action.TAGGED]
    assert first[0].target == os.fsdecode(album / "IMG_0001.jpg.xmp")
    assert first[0].to_json()["keyword"] == "Flowers"
    assert [o.action for o in tag_all(album)] == [Action.ALREADY_TAGGED] * 2
    side = album / "IMG_0002.jpg.xmp"
    by_hand, _ = xmp_splice.add_keyword(side.read_bytes(), "Bees")
    side.write_bytes(by_hand)

    assert {o.action for o in undo_last()} == {Action.UNTAGGED}
    assert not (album / "IMG_0001.jpg.xmp").exists()  # the one the run made
    kw = xmp.read_keywords(side)
    assert not kw.has("Flowers") and kw.subject == ("Rome", "Anna", "Bees")
    assert {p: p.read_bytes() for p in album.glob("*.jpg")} == photos


def test_a_dry_run_writes_nothing_anywhere(album, state_home):
    before = sorted(p.name for p in album.iterdir())
    out = tag_all(album, dry_run=True)
    assert [o.action for o in out] == [Action.WOULD_TAG] * 2
    assert sorted(p.name for p in album.iterdir()) == before
    assert (album / "IMG_0002.jpg.xmp").read_bytes() == DIGIKAM
    assert not (state_dir() / "journal.sqlite").exists()


def test_the_review_band_gets_its_own_keyword(album):
    out = tag_all(album, review=True)
    assert {o.keyword for o in out} == {"Flowers?"}
    assert xmp.read_keywords(album / "IMG_0001.jpg.xmp").hierarchical == ("Flowers?",)


def test_a_keyword_the_user_removed_is_a_veto(album):
    tag_all(album)
    side = album / "IMG_0002.jpg.xmp"
    side.write_bytes(xmp_splice.remove_keyword(side.read_bytes(), "Flowers")[0])  # in digiKam
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        veto = tagger.held(album / "IMG_0002.jpg")
        assert veto is not None and veto.kind == "tag-removed" and veto.label == "not-flower"
        assert tagger.held(album / "IMG_0001.jpg") is None
    finally:
        tagger.close()
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:  # a later run: held by content, also under another name
        os.rename(album / "IMG_0002.jpg", album / "renamed.jpg")
        assert tagger.held(album / "renamed.jpg") is not None
    finally:
        tagger.close()


def test_a_photo_tagged_by_hand_is_a_flower_example(album):
    side = album / "IMG_0001.jpg.xmp"
    side.write_bytes(
        xmp_splice.add_keyword(xmp_splice.new_sidecar(), "Flowers")[0]
    )  # the user, in digiKam
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        assert tagger.hand_tagged(album / "IMG_0001.jpg")
        assert not tagger.hand_tagged(album / "IMG_0002.jpg")
    finally:
        tagger.close()
    store = Store()
    try:
        [c] = store.corrections()
        assert (c.label, c.kind, c.path) == ("flower", "tagged-by-hand", album / "IMG_0001.jpg")
    finally:
        store.close()
    tag_all(album)  # flowersort's own keyword is no hand tag
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        assert not tagger.hand_tagged(album / "IMG_0002.jpg")
    finally:
        tagger.close()


def test_an_unreadable_sidecar_fails_that_photo_only(album):
    (album / "IMG_0002.jpg.xmp").write_bytes(b"<broken")
    out = tag_all(album)
    assert [o.action for o in out] == [Action.TAGGED, Action.FAILED]
    assert out[1].reason.startswith("IMG_0002.jpg.xmp: not well-formed XMP")
    assert (album / "IMG_0002.jpg.xmp").read_bytes() == b"<broken"


def test_recovery_removes_the_temporary_of_an_interrupted_write(album, monkeypatch):
    """A crash after the temporary is written, before it takes the sidecar's name."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for the kill: nothing below runs

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(xmp.os, "rename", crash)
        tag_all(album)
    # the journal's own handler marked it failed; a real kill leaves it started
    journal = Journal(state_dir())
    journal.db.execute("UPDATE tags SET state = 'started' WHERE state = 'failed'")
    tmp = album / f"{xmp_write.TMP_PREFIX}left.xmp"
    tmp.write_bytes(b"half")
    journal.db.execute("UPDATE tags SET tmp = ? WHERE state = 'started'", (os.fsencode(tmp),))
    assert tagjournal.TagJournal(journal).recover() == 1
    journal.close()
    assert not tmp.exists()
    assert (album / "IMG_0002.jpg.xmp").read_bytes() == DIGIKAM


def test_undo_leaves_the_keyword_where_the_user_had_put_it_before(album):
    side = album / "IMG_0002.jpg.xmp"
    theirs = DIGIKAM.replace(
        b"<rdf:li>Anna</rdf:li>", b"<rdf:li>Anna</rdf:li><rdf:li>Flowers</rdf:li>"
    )
    side.write_bytes(theirs)
    assert tag_all(album)[1].action is Action.TAGGED  # into the other two lists
    undo_last()
    assert side.read_bytes() == theirs


def test_a_review_keyword_the_user_made_the_keyword_is_a_flower_not_a_veto(album):
    """digiKam: "Flowers?" taken off, "Flowers" put on: the user confirmed the borderline."""
    tag_all(album, review=True)
    side = album / "IMG_0002.jpg.xmp"
    confirmed = xmp_splice.add_keyword(
        xmp_splice.remove_keyword(side.read_bytes(), "Flowers?")[0], "Flowers"
    )
    side.write_bytes(confirmed[0])
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        assert tagger.held(album / "IMG_0002.jpg") is None
        assert tagger.confirmed(album / "IMG_0002.jpg")
    finally:
        tagger.close()
    store = Store()
    try:
        assert [(c.label, c.kind) for c in store.corrections()] == [("flower", "tagged-by-hand")]
    finally:
        store.close()


def test_a_keyword_the_user_put_back_after_a_veto_makes_the_photo_a_flower_again(album):
    tag_all(album)
    side = album / "IMG_0002.jpg.xmp"
    with_ours = side.read_bytes()
    side.write_bytes(xmp_splice.remove_keyword(with_ours, "Flowers")[0])  # "not a flower"
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        assert tagger.held(album / "IMG_0002.jpg") is not None
    finally:
        tagger.close()
    side.write_bytes(with_ours)  # the user changed their mind: the newest choice wins
    tagger = tagging.Tagger(album.parent, "Flowers", "Flowers?", dry_run=False)
    try:
        assert tagger.held(album / "IMG_0002.jpg") is None
    finally:
        tagger.close()
    store = Store()
    try:
        assert [(c.label, c.kind) for c in store.corrections()] == [("flower", "tagged-by-hand")]
    finally:
        store.close()


def test_undo_takes_the_keyword_out_of_a_sidecar_whose_photo_is_gone(album):
    tag_all(album)
    (album / "IMG_0002.jpg").unlink()  # deleted (or moved) where its sidecar stayed
    assert {o.action for o in undo_last()} == {Action.UNTAGGED}
    assert xmp.read_keywords(album / "IMG_0002.jpg.xmp").subject == ("Rome", "Anna")


KILLED_UNDO = """
import os, signal
from flowersort.sorting import tagjournal
from flowersort.photos import xmp, xmp_splice, xmp_write
from flowersort.sorting.journal import Journal
from flowersort.sorting.state import state_dir

real = xmp_write._fsync
def killed(fd):  # the temporary written and synced, the sidecar not yet replaced
    real(fd)
    os.kill(os.getpid(), signal.SIGKILL)
xmp_write._fsync = killed
journal = Journal(state_dir())
list(tagjournal.undo_tags(journal, tagjournal.tag_runs(journal)[-1].id))
"""


def test_an_undo_killed_mid_write_is_finished_by_the_next_with_no_temporary_left(album):
    tag_all(album)
    root = Path(__file__).parent.parent
    killed = subprocess.run([sys.executable, "-c", KILLED_UNDO], cwd=root, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = [p for p in album.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)]
    assert len(temps) == 1
    assert xmp.read_keywords(album / "IMG_0002.jpg.xmp").has("Flowers")  # as before
    assert {o.action for o in undo_last()} == {Action.UNTAGGED}
    assert [p for p in album.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)] == []
    assert (album / "IMG_0002.jpg.xmp").read_bytes() == DIGIKAM


KILLED_FIRST_TAG = """
import os, signal, sys
from flowersort.sorting import tagging
from flowersort.photos import xmp, xmp_splice, xmp_write

real, calls = xmp_write._fsync, []
def killed(fd):  # the new sidecar has its name; the folder's fsync, then the kill
    real(fd)
    calls.append(fd)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
xmp_write._fsync = killed
tagger = tagging.Tagger(xmp.Path(sys.argv[1]).parent, "Flowers", "Flowers?", dry_run=False)
tagger.tag(sys.argv[1], 0.99, True)
"""


def test_undo_right_after_a_run_killed_at_its_first_write_takes_that_keyword_back(album):
    """No keyword of the run was journaled done yet: undo still finds the run (it finishes
    the interrupted write first, as the next run would) and takes the keyword out."""
    from tests.conftest import run

    photo = album / "IMG_0001.jpg"
    root = Path(__file__).parent.parent
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_FIRST_TAG, str(photo)], cwd=root, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert xmp.read_keywords(album / "IMG_0001.jpg.xmp").has("Flowers")  # complete
    result = run("undo")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in album.iterdir()) == [
        "IMG_0001.jpg",
        "IMG_0002.jpg",
        "IMG_0002.jpg.xmp",
    ]
