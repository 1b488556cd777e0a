"""Issue 32: a root run (cron) over folders another user can write. Each test plays one of
the attacks of ../shared/probes as that user would, with links made and owned as theirs."""

import os

import numpy as np
import pytest

from tests.conftest import make_photo, run, write_photo

OWNER = 4321  # the archive's owner: an unprivileged user
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play another user")


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "home" / "owner" / "Pictures"
    write_photo(root / "album" / "daemon.jpg", make_photo(np.random.default_rng(3), True))
    (root / "album" / "daemon.json").write_text('{"x": 1}')
    return root


def classify(archive, dest, *extra):
    return run("classify", archive, "--move-to", dest, "--threshold", 0, "--workers", 1, *extra)


def owners_link(link, to):
    link.symlink_to(to)
    os.lchown(link, OWNER, OWNER)


@as_root
def test_target_that_is_another_users_link_is_refused(archive, tmp_path):
    rootonly = tmp_path / "rootonly"
    rootonly.mkdir()
    owners_link(archive / "Flowers", rootonly)
    result = classify(archive, archive / "Flowers")
    assert result.exit_code == 2  # the owner can change the link: a root run is refused
    assert result.stderr == (
        f"Error: {archive / 'Flowers'}: user {OWNER} can change {archive / 'Flowers'}, so a "
        f"root run will not write there with root's rights; --run-as {OWNER} acts as that "
        "user, --run-as root keeps root's rights knowingly\n"
    )
    assert list(rootonly.iterdir()) == []
    result = classify(archive, archive / "Flowers", "--run-as", "root")  # and root's own check
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {archive / 'Flowers'}: {archive / 'Flowers'} is a symbolic link of another "
        f"user's (uid {OWNER}); give the folder it points to, or run as that user\n"
    )
    assert list(rootonly.iterdir()) == []
    assert (archive / "album" / "daemon.jpg").exists()


@as_root
def test_review_folder_below_another_users_link_is_refused(archive, tmp_path):
    rootonly = tmp_path / "rootonly"
    rootonly.mkdir()
    owners_link(tmp_path / "home" / "owner" / "Review", rootonly)
    review = tmp_path / "home" / "owner" / "Review" / "maybe"
    result = classify(archive, tmp_path / "out", "--review-to", review)
    assert result.exit_code == 2 and f"{review}: user {OWNER} can change" in result.stderr
    result = classify(archive, tmp_path / "out", "--review-to", review, "--run-as", "root")
    assert result.exit_code == 2 and "is a symbolic link of another user's" in result.stderr
    assert list(rootonly.iterdir()) == []


def test_own_link_to_the_target_is_followed(archive, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "Flowers").symlink_to(tmp_path / "real")
    assert classify(archive, tmp_path / "Flowers").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["daemon.jpg", "daemon.json"]


def test_undo_whose_photos_failed_stays_open(tmp_path, monkeypatch):
    """The source disk full during undo: the run is not marked undone, and the next undo
    puts the photos back."""
    import errno
    import json

    from flowersort.safefs import seams

    archive = tmp_path / "Pictures"
    for i in range(3):
        write_photo(archive / f"IMG_{i}.jpg", make_photo(np.random.default_rng(i), True))
    dest = tmp_path / "Flowers"
    assert classify(archive, dest).exit_code == 0

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(seams, "link", full)
        assert run("undo", "-q").exit_code == 1
    assert len(list(dest.iterdir())) == 3
    [listed] = [json.loads(line) for line in run("undo", "--list", "--json").stdout.splitlines()]
    assert listed["state"] != "undone"
    assert run("undo", "-q").exit_code == 0
    assert not dest.exists() and len(list(archive.iterdir())) == 3


@pytest.mark.parametrize("which", ["source", "target"])
def test_runs_with_other_state_folders_share_the_folder_locks(archive, tmp_path, which):
    """Root's cron (its own state folder) and the owner's shell (another) over the same
    archive and target: the second waits or exits 3 as with one state folder."""
    from flowersort.sorting.lock import FolderLock

    dest = tmp_path / "Flowers"
    dest.mkdir()
    lock = FolderLock(archive if which == "source" else dest)  # the other run's, held
    try:
        result = classify(archive, dest)
    finally:
        lock.release()
    assert result.exit_code == 3
    assert "another flowersort run is moving photos in" in result.stderr
    assert list(dest.iterdir()) == [] and (archive / "album" / "daemon.jpg").exists()
    assert classify(archive, dest).exit_code == 0


@as_root
def test_undo_never_follows_a_link_put_where_a_folder_was(archive, tmp_path):
    """After the nightly move the owner replaces album/ by a link to a root-only folder:
    undo writes nothing there, says why, and the photo stays in the target."""
    rootonly = tmp_path / "rootonly"
    rootonly.mkdir()
    dest = tmp_path / "out" / "Flowers"
    assert classify(archive, dest).exit_code == 0
    (archive / "album").rename(archive / "album.old")
    owners_link(archive / "album", rootonly)
    result = run("undo")
    assert result.exit_code == 1
    assert f"{archive / 'album'} is now a symbolic link of another user's" in result.stderr
    assert list(rootonly.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["daemon.jpg", "daemon.json"]


# The swaps below are made by the owner while root's transfer works: each is injected at the
# step the probes catch it (a copy's bytes written, a name linked).


def test_a_sidecar_swapped_for_a_link_during_the_copy_is_not_copied(tmp_path, monkeypatch):
    from flowersort.safefs import seams, transfer

    secret = tmp_path / "other" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("OTHER-USER-SECRET")
    photo, side = tmp_path / "big.jpg", tmp_path / "big.xmp"
    photo.write_bytes(b"photo bytes")
    side.write_text("<xmp/>")
    copy_bytes = seams.copy_bytes

    def swap_after_the_photo(src_fd, dst_fd):
        copy_bytes(src_fd, dst_fd)
        if not side.is_symlink():
            side.unlink()
            side.symlink_to(secret)

    monkeypatch.setattr(seams, "copy_bytes", swap_after_the_photo)
    folder = tmp_path / "Flowers"
    folder.mkdir()
    with pytest.raises(OSError, match="big.xmp is now a symbolic link; left in place"):
        transfer.transfer([photo, side], folder, keep_source=True)
    assert list(folder.iterdir()) == []


def test_a_photo_that_became_a_link_is_neither_moved_nor_copied(tmp_path):
    from flowersort.safefs import transfer

    secret = tmp_path / "private.jpg"
    secret.write_bytes(b"another user's photo")
    photo = tmp_path / "Pictures" / "p299.jpg"
    photo.parent.mkdir()
    photo.symlink_to(secret)
    folder = tmp_path / "Flowers"
    folder.mkdir()
    for keep_source in (True, False):
        with pytest.raises(OSError, match="p299.jpg is now a symbolic link"):
            transfer.transfer([photo], folder, keep_source=keep_source)
    assert list(folder.iterdir()) == [] and photo.is_symlink()
    [copy] = transfer.transfer([photo], folder, keep_source=True, follow=True)  # asked for
    assert copy.read_bytes() == secret.read_bytes()


def test_a_folder_swapped_for_a_link_mid_move_never_removes_the_file_it_leads_to(
    tmp_path, monkeypatch
):
    """The owner swaps album/ for a link to a folder of root's holding a byte-identical
    file: the "same bytes" check passed and root removed its own file."""
    from flowersort.safefs import seams, transfer

    album, rootshare = tmp_path / "Pictures" / "album", tmp_path / "rootshare"
    album.mkdir(parents=True)
    rootshare.mkdir()
    (rootshare / "big.jpg").write_bytes(b"the same bytes")
    (album / "big.jpg").write_bytes(b"the same bytes")
    link = seams.link

    def swap_after_linking(src, dst):
        link(src, dst)
        album.rename(album.with_name("album.old"))
        album.symlink_to(rootshare)

    monkeypatch.setattr(seams, "link", swap_after_linking)
    folder = tmp_path / "Flowers"
    folder.mkdir()
    with pytest.raises(OSError, match="big.jpg changed while being moved; left in place"):
        transfer.transfer([album / "big.jpg"], folder)
    assert (rootshare / "big.jpg").read_bytes() == b"the same bytes"
    assert (album.with_name("album.old") / "big.jpg").exists()


def test_a_classify_stopped_by_a_signal_is_listed_stopped(tmp_path):
    from flowersort.model.file import default_model_path, load_model
    from flowersort.sorting import sorter, undo

    archive = tmp_path / "Pictures"
    for i in range(4):
        write_photo(archive / f"IMG_{i}.jpg", make_photo(np.random.default_rng(i), True))
    calls = []

    def stop():  # the signal comes as the second photo's turn starts
        calls.append(1)
        return len(calls) > 1

    model = load_model(default_model_path())
    outcomes = sorter.classify(
        model, archive, tmp_path / "Flowers", threshold=0.0, workers=1, stop=stop
    )
    assert len(list(outcomes)) == 1
    [info] = undo.list_runs()
    assert info.state == "stopped" and info.to_json()["state"] == "stopped"
    assert run("undo", "-q").exit_code == 0
    assert len(list(archive.iterdir())) == 4


# (sources cannot hold bad JSON: the journal's index on its first path refuses it)
@pytest.mark.parametrize("column, garbage", [("steps", "[not json"), ("sources", '{"a": 1}')])
def test_a_journal_row_that_does_not_parse_is_set_aside(tmp_path, state_home, column, garbage):
    """A move's record damaged (bad JSON) stopped every later run with exit 4; now it is
    set aside with one warning, never acted on, and the runs go on."""
    import sqlite3

    archive = tmp_path / "Pictures"
    for i in range(2):
        write_photo(archive / f"IMG_{i}.jpg", make_photo(np.random.default_rng(i), True))
    dest = tmp_path / "Flowers"
    assert classify(archive, dest, "--exclude", "IMG_1.jpg").exit_code == 0
    db = sqlite3.connect(state_home / "flowersort" / "journal.sqlite")
    db.execute(f"UPDATE moves SET state = 'started', {column} = ?", (garbage,))
    db.commit()
    db.close()
    result = classify(archive, dest)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("is damaged and set aside") == 1
    assert sorted(p.name for p in dest.iterdir()) == ["IMG_0.jpg", "IMG_1.jpg"]
    assert classify(archive, dest).stderr.count("damaged") == 0  # said once


def test_an_fsync_error_of_the_source_folder_after_the_move_is_a_warning(tmp_path, monkeypatch):
    """EIO from fsync of the source's folder once the source is gone reported a completed
    move as failed (exit 1, journal 'failed')."""
    import errno

    from flowersort.safefs import seams

    archive = tmp_path / "Pictures"
    write_photo(archive / "IMG_0.jpg", make_photo(np.random.default_rng(0), True))
    fsync_dir = seams.fsync_dir

    def eio_for_the_archive(folder):
        if folder == archive:
            raise OSError(errno.EIO, "Input/output error")
        fsync_dir(folder)

    with monkeypatch.context() as m:
        m.setattr(seams, "fsync_dir", eio_for_the_archive)
        result = classify(archive, tmp_path / "Flowers")
    assert result.exit_code == 0, result.output
    assert "could not be synced after the move (Input/output error)" in result.stderr
    assert [p.name for p in (tmp_path / "Flowers").iterdir()] == ["IMG_0.jpg"]
    assert list(archive.iterdir()) == []
    assert run("undo", "-q").exit_code == 0 and (archive / "IMG_0.jpg").exists()


@pytest.mark.parametrize("score, reason", [("0.5x", ""), (None, ""), (None, None)])
def test_a_damaged_cache_row_is_scored_again(tmp_path, score, reason):
    """A text score stopped every later run with exit 4; a NULL one was 'skipped' with an
    empty reason. Either is scored again, with one warning."""
    import json
    import sqlite3

    archive = tmp_path / "Pictures"
    for i in range(2):
        write_photo(archive / f"IMG_{i}.jpg", make_photo(np.random.default_rng(i), True))
    assert run("classify", archive, "--json", "-q").exit_code == 0
    db = sqlite3.connect(tmp_path / "cache" / "flowersort" / "scores.sqlite")
    assert db.execute("UPDATE scores SET score = ?, reason = ?", (score, reason)).rowcount == 2
    db.commit()
    db.close()
    result = run("classify", archive, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["kept", "kept"]
    assert all(isinstance(r["score"], float) for r in rows)
    assert result.stderr.count("holds damaged rows; they are scored again") == 1


def test_a_model_with_nan_weights_is_refused(tmp_path):
    from flowersort.model.file import default_model_path

    with np.load(default_model_path(), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    name = next(k for k, a in arrays.items() if a.dtype.kind == "f" and a.size > 1)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **arrays)
    (tmp_path / "Pictures").mkdir()
    result = run("classify", tmp_path / "Pictures", "--model", bad)
    assert result.exit_code == 2
    assert "is incomplete or incompatible (it holds NaN or infinite numbers)" in result.stderr


@as_root
def test_another_users_raw_twin_stays(tmp_path):
    """A 0600 RAW file of another user with the photo's stem, in a folder both write, is
    not the photo's sidecar: it stays, unread."""
    archive = tmp_path / "shared"
    write_photo(archive / "IMG_1.jpg", make_photo(np.random.default_rng(1), True))
    os.chown(archive / "IMG_1.jpg", OWNER, OWNER)
    theirs = archive / "IMG_1.CR2"
    theirs.write_bytes(b"another user's raw")
    os.chown(theirs, OWNER + 1, OWNER + 1)
    theirs.chmod(0o600)
    dest = tmp_path / "Flowers"
    for extra in ("--dry-run", "--json"):
        result = classify(archive, dest, "--json", extra)
        assert result.exit_code == 0, result.output
        assert "CR2" not in result.stdout
    assert theirs.exists() and [p.name for p in dest.iterdir()] == ["IMG_1.jpg"]


def test_a_move_cut_short_whose_record_is_gone_is_finished_not_learnt(tmp_path):
    """A move on one filesystem killed between linking its final name and removing the
    source, its journal then damaged: the photo was moved again ("NEW_1 (1).jpg", one
    file under two names in the target) and the name it had there was learnt as a
    flower "put into the target by hand". Now the move is finished from what is on
    disk: the source goes, the target holds one name, and no choice is recorded."""
    import json

    from flowersort.sorting.corrections import Store

    archive, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    for i in range(2):
        write_photo(archive / f"OLD_{i}.jpg", make_photo(np.random.default_rng(i), True))
    new = write_photo(archive / "NEW_1.jpg", make_photo(np.random.default_rng(9), True))
    assert classify(archive, dest, "--exclude", "NEW_1.jpg").exit_code == 0  # a run into dest
    os.link(new, dest / "NEW_1.jpg")  # where the kill left it; no journal row knows it
    result = classify(archive, dest, "--json")
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (row["action"], row["detail"]) == ("deduplicated", str(dest / "NEW_1.jpg"))
    assert sorted(p.name for p in dest.iterdir()) == ["NEW_1.jpg", "OLD_0.jpg", "OLD_1.jpg"]
    assert list(archive.iterdir()) == []
    assert os.stat(dest / "NEW_1.jpg").st_nlink == 1
    write_photo(archive / "LATER.jpg", make_photo(np.random.default_rng(5), True))
    assert classify(archive, dest).exit_code == 0  # the next run learns nothing either
    store = Store(dry_run=True)
    assert store.corrections() == []
    store.close()
