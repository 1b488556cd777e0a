"""Moves with the journal: sidecars, clashes, conflicts, the lock, recovery and undo."""

import errno
import json
import os

import pytest
from click.testing import CliRunner

from flowersort import safefs
from flowersort.cli import cli
from flowersort.errors import LockHeld
from flowersort.journal import Journal, RunLock, state_dir
from tests.conftest import census, make_photo, write_photo


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def archive(tmp_path):
    import numpy as np

    rng = np.random.default_rng(5)
    root = tmp_path / "Pictures"
    write_photo(root / "a" / "IMG_0001.jpg", make_photo(rng, True))
    write_photo(root / "b" / "IMG_0001.jpg", make_photo(rng, True))
    (root / "a" / "IMG_0001.xmp").write_text("<xmp/>")
    (root / "a" / "IMG_0001.CR2").write_bytes(b"raw bytes")
    (root / "a" / "IMG_0001.jpg.json").write_text("{}")
    (root / "b" / "notes.txt").write_text("not a photo, not a sidecar")
    return root


def classify(archive, dest, *extra):
    return run(
        "classify", archive, "--move-to", dest, "--threshold", 0, "--json", "--workers", 1, *extra
    )


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_sidecars_move_with_their_photo_and_clashes_are_numbered(archive, tmp_path):
    dest = tmp_path / "Flowers"
    before = census(archive)
    result = classify(archive, dest)
    assert result.exit_code == 0, result.output
    assert names(dest) == [
        "IMG_0001 (1).jpg",
        "IMG_0001.CR2",
        "IMG_0001.jpg",
        "IMG_0001.jpg.json",
        "IMG_0001.xmp",
    ]
    assert names(archive / "a") == [] and names(archive / "b") == ["notes.txt"]
    assert census(archive, dest) == before


def test_a_clash_renames_the_whole_group(archive, tmp_path):
    dest = tmp_path / "Flowers"
    dest.mkdir()
    (dest / "IMG_0001.jpg").write_bytes(b"an unrelated older photo")
    before = census(archive, dest)
    assert classify(archive / "a", dest).exit_code == 0
    assert names(dest) == [
        "IMG_0001 (1).CR2",
        "IMG_0001 (1).jpg",
        "IMG_0001 (1).jpg.json",
        "IMG_0001 (1).xmp",
        "IMG_0001.jpg",
    ]
    assert census(archive, dest) == before


@pytest.mark.parametrize(
    "mode,expected_action,left_in_source",
    [
        ("rename", "moved", False),
        ("skip", "already-there", True),
        ("dedupe", "deduplicated", False),
    ],
)
def test_on_conflict_with_an_identical_copy(
    archive, tmp_path, mode, expected_action, left_in_source
):
    dest = tmp_path / "Flowers"
    dest.mkdir()
    photo = archive / "b" / "IMG_0001.jpg"
    (dest / "IMG_0001.jpg").write_bytes(photo.read_bytes())
    result = classify(archive / "b", dest, "--on-conflict", mode)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout.splitlines()[0])
    assert outcome["action"] == expected_action
    assert photo.exists() == left_in_source
    copies = [p for p in dest.iterdir() if p.read_bytes() == (dest / "IMG_0001.jpg").read_bytes()]
    assert len(copies) == (2 if mode == "rename" else 1)


def test_lock_held_is_exit_3(archive, tmp_path):
    with RunLock(state_dir()):
        result = classify(archive, tmp_path / "Flowers")
    assert result.exit_code == 3
    assert "another flowersort run" in result.stderr
    assert census(archive) and not (tmp_path / "Flowers" / "IMG_0001.jpg").exists()
    with RunLock(state_dir()):
        with pytest.raises(LockHeld):
            RunLock(state_dir())


def test_dry_run_needs_no_lock(archive, tmp_path):
    with RunLock(state_dir()):
        result = classify(archive, tmp_path / "Flowers", "--dry-run")
    assert result.exit_code == 0


def test_undo_puts_everything_back(archive, tmp_path):
    dest = tmp_path / "Flowers"
    listing = sorted(p.relative_to(archive) for p in archive.rglob("*") if p.is_file())
    before = census(archive)
    assert classify(archive, dest).exit_code == 0
    for p in list(archive.rglob("*"))[::-1]:  # even the emptied folders go
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    result = run("undo")
    assert result.exit_code == 0, result.output
    assert "2 restored" in result.stderr
    assert sorted(p.relative_to(archive) for p in archive.rglob("*") if p.is_file()) == listing
    assert census(archive) == before and not dest.exists()  # undo removed the folder it made
    assert run("undo").exit_code == 2  # nothing left to undo


def test_undo_never_overwrites_a_new_file(archive, tmp_path):
    dest = tmp_path / "Flowers"
    assert classify(archive / "b", dest).exit_code == 0
    (archive / "b" / "IMG_0001.jpg").write_bytes(b"a new photo taken since")
    result = run("undo")
    assert result.exit_code == 1
    assert (archive / "b" / "IMG_0001.jpg").read_bytes() == b"a new photo taken since"
    assert (dest / "IMG_0001.jpg").exists()


def test_copy_to_leaves_the_archive_and_undo_removes_copies(archive, tmp_path):
    dest = tmp_path / "Copies"
    before = census(archive)
    result = run("classify", archive, "--copy-to", dest, "--threshold", 0, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert census(archive) == before and len(names(dest)) == 5
    assert "2 copied" in result.stderr
    assert run("undo").exit_code == 0
    assert not dest.exists() and census(archive) == before


def test_failed_moves_are_exit_1_and_lose_nothing(archive, tmp_path, monkeypatch):
    dest = tmp_path / "Flowers"
    before = census(archive)

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safefs, "_link", no_space)
    result = classify(archive, dest)
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    assert census(archive) == before and names(dest) == []


def test_read_only_target(archive, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    dest = tmp_path / "Flowers"
    dest.mkdir()
    dest.chmod(0o555)
    before = census(archive)
    result = classify(archive, dest)
    dest.chmod(0o755)
    assert result.exit_code == 1 and census(archive) == before


def test_a_source_that_vanishes_is_a_clean_failure(archive, tmp_path, monkeypatch):
    from flowersort import sorter

    real = sorter.Mover.move

    def vanish_first(self, photo, score):
        os.unlink(photo)
        return real(self, photo, score)

    monkeypatch.setattr(sorter.Mover, "move", vanish_first)
    result = classify(archive / "b", tmp_path / "Flowers")
    assert result.exit_code == 1 and "No such file" in result.stderr


def crash_during(monkeypatch, step_to_crash, *, cross_device=False):
    """Make safefs stop dead (as on SIGKILL) right before the n-th announced step."""
    real_transfer = safefs.transfer
    real_remove = safefs._remove_quietly
    crashed = []

    def remove_unless_crashed(path):  # a killed process cleans nothing up
        if not crashed:
            real_remove(path)

    def transfer(sources, folder, **kw):
        note = kw.pop("note")
        count = {"n": 0}

        def crashing_note(step, path):
            note(step, path=path)
            count["n"] += 1
            if count["n"] == step_to_crash:
                crashed.append(step)
                raise KeyboardInterrupt  # stands for the kill: no cleanup code runs after it

        return real_transfer(sources, folder, note=crashing_note, **kw)

    monkeypatch.setattr(safefs, "transfer", transfer)
    monkeypatch.setattr(safefs, "_remove_quietly", remove_unless_crashed)
    if cross_device:

        def link(a, b):
            if "Pictures" in str(a):
                raise OSError(errno.EXDEV, "cross-device")
            os.link(a, b)

        monkeypatch.setattr(safefs, "_link", link)


@pytest.mark.parametrize("cross_device", [False, True])
@pytest.mark.parametrize("step", range(1, 16))
def test_recovery_after_a_crash_at_every_step(archive, tmp_path, monkeypatch, step, cross_device):
    dest = tmp_path / "Flowers"
    dest.mkdir()
    before = census(archive)
    with monkeypatch.context() as m:
        crash_during(m, step, cross_device=cross_device)
        journal = Journal(state_dir())
        run_id = journal.start_run("classify", archive, dest)
        group = [archive / "a" / n for n in ("IMG_0001.jpg", "IMG_0001.xmp", "IMG_0001.CR2")]
        try:
            journal.transfer(run_id, group, dest)
        except KeyboardInterrupt:
            pass
        journal.close()
    assert Journal(state_dir()).recover() <= 1
    assert census(archive, dest) == before  # each file exactly once, byte-identical
    assert not [p for p in dest.iterdir() if p.name.startswith(safefs.TMP_PREFIX)]
    in_source = sorted(p.name for p in (archive / "a").iterdir())
    assert in_source in (
        ["IMG_0001.jpg.json"],
        ["IMG_0001.CR2", "IMG_0001.jpg", "IMG_0001.jpg.json", "IMG_0001.xmp"],
    )


def test_recovery_never_removes_a_users_own_link_to_the_photo(archive, tmp_path):
    """A name tried and found taken (here by the user's own hard link) is never ours."""
    dest = tmp_path / "Flowers"
    dest.mkdir()
    photo = archive / "b" / "IMG_0001.jpg"
    os.link(photo, dest / "IMG_0001.jpg")  # the user linked it there earlier
    journal = Journal(state_dir())
    run_id = journal.start_run("classify", archive, dest)
    steps = [["claim", str(dest / "IMG_0001.jpg")], ["claim", str(dest / "IMG_0001 (1).jpg")]]
    journal.db.execute(
        "INSERT INTO moves(run, sources, keep_source, state, steps) VALUES (?, ?, 0, 'started', ?)",
        (run_id, json.dumps([str(photo)]), json.dumps(steps)),
    )
    assert journal.recover() == 1
    assert (dest / "IMG_0001.jpg").exists() and photo.exists()
