"""Moves with the journal: sidecars, clashes, conflicts, the lock, recovery and undo."""

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flowersort.base.errors import LockHeld
from flowersort.safefs import attrs, identity, seams
from flowersort.safefs import copies as copying
from flowersort.safefs import transfer as moving
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import RunLock
from flowersort.sorting.state import state_dir
from tests.conftest import (
    ROOT_ON_A_STICK,
    census,
    exfat,
    make_photo,
    mounted,
    run,
    small_tmpfs,
    write_photo,
)
from tests.runs import ROOT


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
    before = census(archive)
    with RunLock(state_dir()):
        result = classify(archive, tmp_path / "Flowers")
    assert result.exit_code == 3
    assert "another flowersort run" in result.stderr
    assert census(archive) == before and not (tmp_path / "Flowers").exists()
    with RunLock(state_dir()):
        with pytest.raises(LockHeld):
            RunLock(state_dir())


def test_lock_file_that_is_a_link_is_refused(archive, tmp_path):
    """A lock file another user replaced by a link to a file of root's is not truncated."""
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    state_dir().mkdir(parents=True)
    (state_dir() / "lock").symlink_to(victim)
    result = classify(archive, tmp_path / "Flowers")
    assert result.exit_code == 2
    assert "run lock" in result.stderr and "it is a symbolic link" in result.stderr
    assert victim.read_text() == "root:x:0:0\n"


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

    monkeypatch.setattr(seams, "link", no_space)
    result = classify(archive, dest)
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr
    assert census(archive) == before and names(dest) == []


@contextlib.contextmanager
def unwritable(tmp_path, kind):
    """A target that cannot be written: on a read-only filesystem (a real read-only tmpfs
    as root, else a folder of mode 555), a new folder on one, or a file in the way."""
    if kind == "a file in the way":
        (tmp_path / "Flowers").write_text("not a folder")  # click refuses a file as DEST
        yield tmp_path / "Flowers" / "Best"
        return
    mount = tmp_path / "mnt"
    if os.geteuid() == 0:
        with mounted(mount, "mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"):
            yield mount if kind == "read-only" else mount / "Flowers"
        return
    mount.mkdir(mode=0o555)
    try:
        yield mount if kind == "read-only" else mount / "Flowers"
    finally:
        mount.chmod(0o755)


@pytest.mark.parametrize("dry_run", [False, True], ids=["move", "dry-run-copy"])
@pytest.mark.parametrize(
    "kind", ["read-only", "a new folder on a read-only disk", "a file in the way"]
)
def test_a_target_that_cannot_be_written_stops_the_run_before_the_first_photo(
    archive, tmp_path, kind, dry_run
):
    before = census(archive)
    with unwritable(tmp_path, kind) as dest:
        how = ["--copy-to", dest, "--dry-run"] if dry_run else ["--move-to", dest]
        result = run("classify", archive, *how, "--threshold", 0, "--json", "--workers", 1)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""  # no photo was looked at
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: ") and str(dest) in line
        why = "is not a folder" if kind == "a file in the way" else "Read-only file system"
        if os.geteuid() != 0 and kind != "a file in the way":
            why = "Permission denied"
        assert line.endswith(why)
    assert census(archive) == before


def test_an_empty_source_whose_target_cannot_be_made_in_it_is_still_exit_5(tmp_path):
    """An unmounted NAS whose mount point the cron user cannot write (root's, mode 755):
    the empty SRC is what to say (exit 5, "is it mounted?"), not a target that cannot be
    created in it (exit 2, as for a usage error)."""
    with unwritable(tmp_path, "a new folder on a read-only disk") as dest:
        mount_point = dest.parent
        result = run("classify", mount_point, "--move-to", dest, "--quiet")
        assert result.exit_code == 5, result.output
        assert result.output == (
            f"Error: {mount_point} is empty: nothing to do, nothing created (is it mounted?)\n"
        )


def test_a_target_where_files_cannot_be_removed_is_one_line_and_exit_2(archive, tmp_path):
    """An append-only folder (chattr +a; a write-once share): the probe file is created but
    cannot be removed. One line naming the target and the file left, exit 2, no photo
    touched (it was 'unexpected PermissionError', exit 4, as for a bug)."""
    dest = tmp_path / "Flowers"
    dest.mkdir()
    if subprocess.run(["chattr", "+a", dest], capture_output=True, check=False).returncode:
        pytest.skip("no chattr +a here (needs root and a filesystem with attributes)")
    before = census(archive)
    try:
        result = run("classify", archive, "--move-to", dest, "--threshold", 0, "--quiet")
        (left,) = os.listdir(dest)
    finally:
        subprocess.run(["chattr", "-a", dest], check=False)
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"Error: cannot write into the target {dest}: a file made there cannot be removed "
        f"(Operation not permitted): remove {dest / left}\n"
    )
    assert census(archive) == before


def test_a_target_that_refuses_what_access_allows_is_found_by_a_probe(
    archive, tmp_path, monkeypatch
):
    with unwritable(tmp_path, "read-only") as dest:
        with monkeypatch.context() as m:
            m.setattr(os, "access", lambda *args, **kwargs: True)  # a share that says yes
            result = classify(archive, dest)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.startswith(f"Error: cannot write into the target {dest}: ")
        assert os.listdir(dest) == []


def test_a_source_that_vanishes_is_a_clean_failure(archive, tmp_path, monkeypatch):
    from flowersort.sorting import moves

    real = moves.Mover.move

    def vanish_first(self, photo, score, *rest):
        os.unlink(photo)
        return real(self, photo, score, *rest)

    monkeypatch.setattr(moves.Mover, "move", vanish_first)
    result = classify(archive / "b", tmp_path / "Flowers")
    assert result.exit_code == 1 and "No such file" in result.stderr


def transfer_crashing_at(monkeypatch, step: int, sources: list, dest) -> None:
    """One journalled classify move of `sources` into dest that stops dead (as on
    SIGKILL) right before its step-th announced step, as crash_during says."""
    with monkeypatch.context() as m:
        crash_during(m, step)
        journal = Journal(state_dir())
        run_id = journal.start_run("classify", sources[0].parent, dest)
        try:
            journal.transfer(run_id, sources, dest)
        except KeyboardInterrupt:
            pass
        journal.close()


def crash_during(monkeypatch, step_to_crash, *, cross_device=False):
    """Make safefs stop dead (as on SIGKILL) right before the n-th announced step."""
    real_transfer = moving.transfer
    real_remove = seams.remove_quietly
    crashed = []

    def remove_unless_crashed(path):  # a killed process cleans nothing up
        if not crashed:
            real_remove(path)

    def transfer(sources, folder, **kw):
        note = kw.pop("note")
        count = {"n": 0}

        def crashing_note(step, path, **details):
            note(step, path=path, **details)
            count["n"] += 1
            if count["n"] == step_to_crash:
                crashed.append(step)
                raise KeyboardInterrupt  # stands for the kill: no cleanup code runs after it

        return real_transfer(sources, folder, note=crashing_note, **kw)

    monkeypatch.setattr(moving, "transfer", transfer)
    monkeypatch.setattr(seams, "remove_quietly", remove_unless_crashed)
    if cross_device:

        def link(a, b):
            if "Pictures" in str(a):
                raise OSError(errno.EXDEV, "cross-device")
            os.link(a, b)

        monkeypatch.setattr(seams, "link", link)


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
    assert not [p for p in dest.iterdir() if p.name.startswith(copying.TMP_PREFIX)]
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


@pytest.mark.parametrize("how", ["same", "symlink", "photo-in-it"])
@pytest.mark.parametrize("mode", ["rename", "dedupe"])
def test_a_target_that_is_the_source_is_a_usage_error(archive, tmp_path, how, mode):
    src = archive / "a"
    target = {"same": src, "symlink": tmp_path / "link", "photo-in-it": src}[how]
    if how == "symlink":
        target.symlink_to(src)
    before = sorted(p.name for p in src.iterdir())
    arg = src / "IMG_0001.jpg" if how == "photo-in-it" else src
    result = classify(arg, target, "--on-conflict", mode)
    assert result.exit_code == 2, result.output
    assert "itself" in result.stderr
    assert sorted(p.name for p in src.iterdir()) == before


def test_a_target_inside_the_source_with_photos_is_said(archive, tmp_path):
    (archive / "Flowers").mkdir()
    write_photo(
        archive / "Flowers" / "old.jpg", make_photo(__import__("numpy").random.default_rng(1), True)
    )
    result = classify(archive, archive / "Flowers")
    assert result.exit_code == 0, result.output
    assert "already holds photos" in result.stderr and "never classified" in result.stderr


def test_a_photo_is_never_its_own_identical_twin(archive, tmp_path):
    from flowersort.sorting.moves import identical_at_target

    photo = archive / "a" / "IMG_0001.jpg"
    assert identical_at_target(photo, archive / "a") is None


def test_recovery_after_the_temporaries_are_gone_takes_back_the_copies(
    archive, tmp_path, monkeypatch
):
    """Killed between removing the temporaries and the first source unlink: the finals
    are links to removed temporaries, still the move's own copies."""
    dest = tmp_path / "Flowers"
    dest.mkdir()
    before = census(archive)
    real_fsync_dir = seams.fsync_dir

    def killed_at_the_target(folder):
        if folder == dest:
            raise KeyboardInterrupt  # stands for the kill: nothing runs after it
        real_fsync_dir(folder)

    with monkeypatch.context() as m:
        crash_during(m, 10_000, cross_device=True)  # only the cross-device links
        m.setattr(seams, "fsync_dir", killed_at_the_target)
        journal = Journal(state_dir())
        run_id = journal.start_run("classify", archive, dest)
        group = [archive / "a" / n for n in ("IMG_0001.jpg", "IMG_0001.xmp")]
        with pytest.raises(KeyboardInterrupt):
            journal.transfer(run_id, group, dest)
        journal.close()
    assert len(names(dest)) == 2  # the copies were made, the temporaries removed
    assert Journal(state_dir()).recover() == 1
    assert census(archive, dest) == before and names(dest) == []


def test_a_name_taken_but_not_yet_noted_is_taken_back(tree_for_notes):
    src, dest = tree_for_notes
    before = census(src, dest)

    def note(step, path, **details):
        if step == "claimed":
            raise OSError(errno.ENOSPC, "No space left on device")  # the journal's disk

    with pytest.raises(OSError):
        moving.transfer([src / "IMG_0001.jpg", src / "IMG_0001.xmp"], dest, note=note)
    assert names(dest) == [] and census(src, dest) == before


@pytest.fixture
def tree_for_notes(tmp_path):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    src.mkdir()
    dest.mkdir()
    (src / "IMG_0001.jpg").write_bytes(b"photo")
    (src / "IMG_0001.xmp").write_bytes(b"<xmp/>")
    return src, dest


def test_a_full_target_leaks_no_temporaries_and_stops_taking_moves(tmp_path):
    """A real 2 MB tmpfs: the second photo's 1.5 MB RAW twin does not fit."""
    import numpy as np

    rng = np.random.default_rng(3)
    src = tmp_path / "Pictures"
    for i in range(3):
        write_photo(src / f"IMG_{i}.jpg", make_photo(rng, True))
        (src / f"IMG_{i}.CR2").write_bytes(rng.bytes(1_500_000))
    before = census(src)
    with small_tmpfs(tmp_path / "stick", "2m") as stick:
        dest = stick / "Flowers"
        result = classify(src, dest)
        assert result.exit_code == 1, result.output
        actions = [json.loads(line)["action"] for line in result.stdout.splitlines()]
        assert actions == ["moved", "failed", "not-attempted"]
        assert "1 not attempted" in result.stderr
        assert [p for p in stick.rglob("*") if p.name.startswith(copying.TMP_PREFIX)] == []
        assert census(src, dest) == before


def test_a_photo_replaced_after_scoring_is_left_in_place(archive, tmp_path, monkeypatch):
    from flowersort.sorting import moves

    real = moves.Mover.move
    photo = archive / "b" / "IMG_0001.jpg"

    def replaced_first(self, path, score, *rest):
        replacement = photo.with_name("new.tmp")
        replacement.write_text("a sync client's text file")
        os.replace(replacement, photo)
        return real(self, path, score, *rest)

    monkeypatch.setattr(moves.Mover, "move", replaced_first)
    dest = tmp_path / "Flowers"
    result = classify(archive / "b", dest)
    assert result.exit_code == 1
    assert "changed since it was scored" in result.stderr
    assert photo.read_text() == "a sync client's text file" and names(dest) == []


def test_dedupe_takes_the_sidecars_and_undo_brings_the_group_back(archive, tmp_path):
    b, dest = archive / "b", tmp_path / "Flowers"
    dest.mkdir()
    (b / "IMG_0001.xmp").write_text("<xmp rating='5'/>")
    (b / "IMG_0001.aae").write_text("an edit")
    (dest / "IMG_0001.jpg").write_bytes((b / "IMG_0001.jpg").read_bytes())
    (dest / "IMG_0001.xmp").write_text("<xmp rating='5'/>")
    before = census(b, dest)
    listing = names(b)
    result = classify(b, dest, "--on-conflict", "dedupe")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["action"] == "deduplicated"
    # where each sidecar is now: the .aae moved by the twin, the .xmp's twin was there
    assert out["sidecars"] == [str(dest / "IMG_0001.aae"), str(dest / "IMG_0001.xmp")]
    assert names(b) == ["notes.txt"]  # no sidecar left behind
    assert names(dest) == ["IMG_0001.aae", "IMG_0001.jpg", "IMG_0001.xmp"]
    assert set(census(b, dest)) == set(before)  # nothing lost, the duplicates gone
    plan = run("undo", "--dry-run")
    assert plan.stdout == (
        f"would restore: {dest / 'IMG_0001.jpg'} -> {b / 'IMG_0001.jpg'} + .aae, .xmp\n"
    )
    assert "1 photo: 1 would restore, 0 failed" in plan.stderr
    result = run("undo")
    assert result.exit_code == 0, result.output
    assert "1 restored" in result.stderr
    # the .xmp is copied back from its twin, the .aae moved back: both are named
    assert result.stdout == (
        f"restored: {dest / 'IMG_0001.jpg'} -> {b / 'IMG_0001.jpg'} + .aae, .xmp\n"
    )
    assert names(b) == listing and census(b, dest) == before


def test_a_dry_run_with_dedupe_says_it_would_deduplicate_as_the_real_run_does(archive, tmp_path):
    b, dest = archive / "b", tmp_path / "Flowers"
    dest.mkdir()
    (b / "IMG_0001.xmp").write_text("<xmp rating='5'/>")
    (b / "IMG_0001.MOV").write_bytes(b"the motion of a live photo")
    (dest / "IMG_0001.jpg").write_bytes((b / "IMG_0001.jpg").read_bytes())
    (dest / "IMG_0001.xmp").write_text("<xmp rating='5'/>")
    before = census(b, dest)
    plan = classify(b, dest, "--on-conflict", "dedupe", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert census(b, dest) == before
    done = classify(b, dest, "--on-conflict", "dedupe")
    planned, happened = json.loads(plan.stdout), json.loads(done.stdout)
    assert (planned["action"], happened["action"]) == ("would-deduplicate", "deduplicated")
    assert planned["detail"] == happened["detail"] == str(dest / "IMG_0001.jpg")
    assert (
        planned["sidecars"]
        == happened["sidecars"]
        == [
            str(dest / "IMG_0001.MOV"),
            str(dest / "IMG_0001.xmp"),
        ]
    )


def test_dedupe_moves_the_group_when_a_different_file_holds_a_sidecars_name(archive, tmp_path):
    b, dest = archive / "b", tmp_path / "Flowers"
    dest.mkdir()
    (b / "IMG_0001.xmp").write_text("<xmp rating='5'/>")
    (dest / "IMG_0001.jpg").write_bytes((b / "IMG_0001.jpg").read_bytes())
    (dest / "IMG_0001.xmp").write_text("<xmp rating='1'/>")
    before = census(b, dest)
    result = classify(b, dest, "--on-conflict", "dedupe")
    assert json.loads(result.stdout)["action"] == "moved"
    assert census(b, dest) == before and "IMG_0001 (1).xmp" in names(dest)


def test_a_dedupe_cut_short_is_finished_by_recovery(tree_for_notes, monkeypatch):
    src, dest = tree_for_notes
    for p in src.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    real_unlink, calls = seams.remove, []

    def killed_at_the_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_unlink(path)

    journal = Journal(state_dir())
    run_id = journal.start_run("classify", src, dest)
    group = [src / "IMG_0001.jpg", src / "IMG_0001.xmp"]
    with monkeypatch.context() as m:
        m.setattr(seams, "remove", killed_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            journal.dedupe(run_id, group, [dest / p.name for p in group])
    assert names(src) == ["IMG_0001.xmp"]  # split: the photo went, its sidecar not yet
    assert journal.recover() == 1
    assert names(src) == [] and names(dest) == ["IMG_0001.jpg", "IMG_0001.xmp"]


@contextlib.contextmanager
def immutable(path):
    """chattr +i: not even root can remove it (a real fault, where the machine allows)."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_a_sidecar_that_cannot_be_removed_keeps_the_group_whole(archive, tmp_path, across):
    a = archive / "a"
    before = census(a)
    listing = names(a)
    with contextlib.ExitStack() as stack:
        stack.enter_context(immutable(a / "IMG_0001.xmp"))
        folder = stack.enter_context(small_tmpfs(tmp_path / "other", "4m")) if across else tmp_path
        dest = folder / "Flowers"
        result = classify(a, dest)
        assert result.exit_code == 1, result.output
        assert "IMG_0001.xmp cannot be removed" in result.stderr
        assert names(a) == listing and names(dest) == []  # complete or not done
        assert census(a, dest) == before
        result = run("undo")
        assert result.exit_code == 2 and "nothing to undo" in result.stderr


def test_undo_says_which_group_a_failed_move_left_split(archive, tmp_path, monkeypatch):
    a, dest = archive / "a", tmp_path / "Flowers"
    real_unlink = seams.remove

    def sidecar_stays(path):
        if path.suffix == ".xmp":
            raise OSError(errno.EPERM, "Operation not permitted")
        real_unlink(path)

    def cannot_put_back(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(seams, "remove", sidecar_stays)
        m.setattr(moving, "put_back", cannot_put_back)
        result = classify(a, dest)
    assert result.exit_code == 1 and "the group is split" in result.stderr
    result = run("undo")
    assert result.exit_code == 1
    assert "left split by its move" in result.stderr and "IMG_0001.jpg" in result.stderr


def test_undo_after_an_interrupted_undo_finishes_quietly(archive, tmp_path):
    from flowersort.sorting.undo import undo

    dest = tmp_path / "Flowers"
    before = census(archive)
    assert classify(archive, dest).exit_code == 0
    interrupted = undo()
    assert next(interrupted).action == "restored"
    interrupted.close()  # stopped after its first photo, the run not marked undone
    result = run("undo")
    assert result.exit_code == 0, result.output
    assert "failed" not in result.stdout and "0 failed" in result.stderr
    assert "1 restored" in result.stderr
    assert "1 photo had already been put back by an undo that was interrupted" in result.stderr
    assert census(archive) == before and not dest.exists()  # the folder it made went too


def test_moves_onto_exfat_without_hard_links_and_with_case_clashes(tmp_path):
    """A real exFAT stick: link() is refused and IMG.JPG clashes with img.jpg."""
    import numpy as np

    rng = np.random.default_rng(8)
    src = tmp_path / "Pictures"
    write_photo(src / "a" / "IMG.JPG", make_photo(rng, True))
    (src / "a" / "IMG.xmp").write_text("<xmp/>")
    write_photo(src / "b" / "img.jpg", make_photo(rng, True))
    before = census(src)
    with exfat(tmp_path / "stick") as stick:
        dest = stick / "Flowers"
        result = classify(src, dest, *ROOT_ON_A_STICK)
        assert result.exit_code == 0, result.output
        assert sorted(names(dest)) == ["IMG.JPG", "IMG.xmp", "img (1).jpg"]
        assert census(src, dest) == before and not list(src.rglob("*.*"))
        result = run("undo", *ROOT_ON_A_STICK)
        assert result.exit_code == 0, result.output
        assert not dest.exists() and census(src) == before


def private_archive(src):
    """Two private groups (a photo with an .xmp, a Live Photo pair), a shared photo with a
    private .xmp, and a shared photo; returns {name: (mode, bytes)} of every file."""
    import numpy as np

    rng = np.random.default_rng(11)
    modes = {
        "a/IMG_0001.jpg": 0o600,
        "a/IMG_0001.xmp": 0o600,
        "b/IMG_0002.JPG": 0o600,
        "b/IMG_0002.MOV": 0o600,
        "c/IMG_0003.jpg": 0o644,
        "c/IMG_0003.xmp": 0o600,
        "d/IMG_0004.jpg": 0o644,
    }
    for name, mode in modes.items():
        path = src / name
        if path.suffix.lower() == ".jpg":
            write_photo(path, make_photo(rng, True))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(name.encode())
        path.chmod(mode)
    return {n: (stat.S_IMODE((src / n).stat().st_mode), (src / n).read_bytes()) for n in modes}


@pytest.mark.parametrize(
    "option,done,verb", [("--move-to", "moved", "moved"), ("--copy-to", "copied", "copied")]
)
def test_a_private_photo_is_not_put_where_everyone_could_read_it(
    tmp_path, monkeypatch, option, done, verb
):
    """exFAT through FUSE shows every file 0777: a group with a private file stays in the
    source, whole, and no byte of a private file is written there; the others go on."""
    src = tmp_path / "Pictures"
    before = private_archive(src)
    written = []  # (file, folder) of every copy's bytes
    real_copy_bytes = seams.copy_bytes

    def copy_bytes(src_fd, dst_fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{src_fd}"))
        written.append((name, os.path.dirname(os.readlink(f"/proc/self/fd/{dst_fd}"))))
        real_copy_bytes(src_fd, dst_fd)

    monkeypatch.setattr(seams, "copy_bytes", copy_bytes)
    with exfat(tmp_path / "stick") as stick:
        dest = stick / "Flowers"
        result = run(
            "classify",
            src,
            option,
            dest,
            "--threshold",
            0,
            "--json",
            "--workers",
            1,
            *ROOT_ON_A_STICK,
        )
        assert result.exit_code == 1, result.output
        said = {os.path.basename(o["path"]): o for o in map(json.loads, result.stdout.splitlines())}
        assert {n: o["action"] for n, o in said.items()} == {
            "IMG_0001.jpg": "failed",
            "IMG_0002.JPG": "failed",
            "IMG_0003.jpg": "failed",  # its .xmp is private
            "IMG_0004.jpg": done,
        }
        for photo, private in [
            ("IMG_0001.jpg", "IMG_0001.jpg"),
            ("IMG_0002.JPG", "IMG_0002.JPG"),
            ("IMG_0003.jpg", "IMG_0003.xmp"),
        ]:
            assert said[photo]["detail"] == (
                f"{dest} cannot keep {private} private (it would be readable by everyone: "
                f"that disk does not keep its file permissions); not {verb}"
            )
        line = f"failed: {src / 'a' / 'IMG_0001.jpg'}: {dest} cannot keep IMG_0001.jpg private"
        assert line in result.stderr
        assert names(dest) == ["IMG_0004.jpg"]  # no temporary left
        assert sorted(written) == [("IMG_0003.jpg", str(dest)), ("IMG_0004.jpg", str(dest))]
    kept = {n: v for n, v in before.items() if not n.startswith("d/")}
    now = {n: (stat.S_IMODE((src / n).stat().st_mode), (src / n).read_bytes()) for n in kept}
    assert now == kept


def test_a_private_photo_moves_to_a_stick_mounted_to_keep_it_private(tmp_path):
    """umask=077: exFAT shows every file 0700 (root's): a private group moves, and undo
    gives it back its own mode."""
    src = tmp_path / "Pictures"
    before = private_archive(src)
    with exfat(tmp_path / "stick", options="umask=077") as stick:
        dest = stick / "Flowers"
        result = classify(src, dest)
        assert result.exit_code == 0, result.output
        assert {json.loads(line)["action"] for line in result.stdout.splitlines()} == {"moved"}
        assert len(names(dest)) == len(before) and not any(src.rglob("*.*"))
        assert {stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()} == {0o700}
        result = run("undo")
        assert result.exit_code == 0, result.output
    now = {n: (stat.S_IMODE((src / n).stat().st_mode), (src / n).read_bytes()) for n in before}
    assert now == before


@pytest.mark.parametrize(
    "options,who,private_mode,owner,mode",
    [
        ("uid=1234,gid=1234,umask=077", "user 1234", 0o600, (1234, 1234), 0o600),  # files 0700
        ("gid=1234,umask=027", "group 1234", 0o640, (0, 1234), 0o640),  # files 0750, root's
    ],
    ids=["owner", "group"],
)
def test_a_private_photo_is_not_given_to_the_user_or_group_a_stick_is_mounted_for(
    tmp_path, options, who, private_mode, owner, mode
):
    """Each file on the stick is that user's or group's: a photo of root's (group root's
    for 0640) would become readable by them; a photo they could read already moves."""
    import numpy as np

    rng = np.random.default_rng(12)
    src = tmp_path / "Pictures"
    private = write_photo(src / "a" / "IMG_0001.jpg", make_photo(rng, True))
    private.chmod(private_mode)
    os.chown(private, 0, 0)
    theirs = write_photo(src / "b" / "IMG_0002.jpg", make_photo(rng, True))
    theirs.chmod(mode)
    os.chown(theirs, *owner)
    with exfat(tmp_path / "stick", options=options) as stick:
        dest = stick / "Flowers"
        result = classify(src, dest, *ROOT_ON_A_STICK)
        assert result.exit_code == 1, result.output
        out = {os.path.basename(o["path"]): o for o in map(json.loads, result.stdout.splitlines())}
        assert out["IMG_0002.jpg"]["action"] == "moved"
        assert out["IMG_0001.jpg"]["action"] == "failed"
        detail = out["IMG_0001.jpg"]["detail"]
        assert f"it would be readable by {who}: that folder gives its files an owner" in detail
        assert names(dest) == ["IMG_0002.jpg"] and private.exists()


def test_recovery_on_exfat_after_a_crash_at_every_step(archive, tmp_path, monkeypatch):
    """Names taken with empty files (no hard links) are recognised and taken back."""
    group_names = ("IMG_0001.jpg", "IMG_0001.xmp", "IMG_0001.CR2")
    with exfat(tmp_path / "stick") as stick:
        for step in range(1, 21):  # 18 steps: the last kills nothing
            src, dest = tmp_path / f"src{step}", stick / f"Flowers{step}"
            dest.mkdir()
            src.mkdir()
            for name in group_names:
                shutil.copy2(archive / "a" / name, src / name)
            (dest / "img_0001.jpg").write_bytes(b"an older photo: a clash whatever the case")
            before = census(src, dest)
            transfer_crashing_at(monkeypatch, step, [src / n for n in group_names], dest)
            assert Journal(state_dir()).recover() <= 1
            assert census(src, dest) == before, step
            assert names(src) in ([], sorted(group_names)), step
            assert not [p for p in dest.iterdir() if p.name.startswith(copying.TMP_PREFIX)]


def test_a_recovery_that_fails_is_said_and_tried_again(archive, tmp_path, monkeypatch, caplog):
    dest = tmp_path / "Flowers"
    dest.mkdir()
    before = census(archive)
    with monkeypatch.context() as m:
        crash_during(m, 6, cross_device=True)  # the temporaries made, a name taken
        journal = Journal(state_dir())
        run_id = journal.start_run("classify", archive, dest)
        with pytest.raises(KeyboardInterrupt):
            journal.transfer(
                run_id, [archive / "a" / "IMG_0001.jpg", archive / "a" / "IMG_0001.xmp"], dest
            )
        journal.close()

    def io_error(path):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(seams, "remove", io_error)
        assert Journal(state_dir()).recover() == 0  # no traceback: said, left for later
    assert "could not recover the move" in caplog.text
    assert Journal(state_dir()).recover() == 1
    assert census(archive, dest) == before and names(dest) == []


def test_recovery_also_cleans_what_a_failed_move_left(archive, tmp_path):
    """A failed move whose own clean-up was stopped too (a full disk, an I/O error): the
    next run removes its temporary and the name it had taken."""
    dest = tmp_path / "Flowers"
    dest.mkdir()
    photo = archive / "b" / "IMG_0001.jpg"
    tmp = dest / (copying.TMP_PREFIX + "0123456789abcdef")
    tmp.write_bytes(photo.read_bytes())
    os.link(tmp, dest / "IMG_0001.jpg")
    steps = [
        ["claim", str(dest / "IMG_0001.jpg")],
        ["tmp", str(tmp)],
        ["claim", str(dest / "IMG_0001.jpg")],
        ["claimed", str(dest / "IMG_0001.jpg"), identity.identity(dest / "IMG_0001.jpg")],
    ]
    journal = Journal(state_dir())
    run_id = journal.start_run("classify", archive, dest)
    journal.db.execute(
        "INSERT INTO moves(run, sources, keep_source, state, steps) VALUES (?, ?, 0, 'failed', ?)",
        (run_id, json.dumps([str(photo)]), json.dumps(steps)),
    )
    assert journal.recover() == 0  # nothing was interrupted, but
    assert names(dest) == [] and photo.exists()


def test_undo_of_a_dedupe_gives_the_photo_back_its_own_mode_times_owner_and_tags(archive, tmp_path):
    """The twin that stays is another file, with its own mode, times and tags (a card read
    twice): the photo undo brings back must be the one removed, not a copy of the twin's."""
    b, dest = archive / "b", tmp_path / "Flowers"
    dest.mkdir()
    photo, twin = b / "IMG_0001.jpg", dest / "IMG_0001.jpg"
    twin.write_bytes(photo.read_bytes())
    os.chmod(photo, 0o600)
    os.utime(photo, ns=(1_000_000_000, 1_500_000_000_123_456_789))
    try:
        os.setxattr(photo, "user.xdg.tags", b"garden")
        os.setxattr(twin, "user.comment", b"the twin's")
    except OSError:
        pass  # a filesystem without user xattrs: the rest still holds
    if os.geteuid() == 0:
        os.chown(photo, 1234, 2345)

    def kept(path):
        st = os.lstat(path)
        tags = {n: os.getxattr(path, n) for n in os.listxattr(path)}
        return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tags

    before = kept(photo)
    result = classify(b, dest, "--on-conflict", "dedupe")
    assert json.loads(result.stdout)["action"] == "deduplicated"
    assert not photo.exists()
    assert run("undo").exit_code == 0
    assert kept(photo) == before


def test_a_move_journaled_with_relative_paths_by_an_older_version_is_recovered_from_anywhere(
    tmp_path, monkeypatch
):
    """A journal written before paths were absolute: `cd ~; flowersort classify Pictures
    --move-to Flowers` killed between the unlinks of a group. The new version's nightly run,
    started elsewhere (cron), must finish that move, not leave the .xmp in both places."""
    import sqlite3

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    write_photo(
        home / "Pictures" / "IMG_0001.jpg",
        make_photo(__import__("numpy").random.default_rng(1), True),
    )
    (home / "Pictures" / "IMG_0001.xmp").write_text("<xmp/>")
    (home / "Flowers").mkdir()
    elsewhere.mkdir()
    steps = []
    for name in ("IMG_0001.jpg", "IMG_0001.xmp"):
        os.link(home / "Pictures" / name, home / "Flowers" / name)
        steps += [
            ["claim", f"Flowers/{name}"],
            ["claimed", f"Flowers/{name}", identity.identity(home / "Flowers" / name)],
        ]
    steps += [["unlink", "Pictures/IMG_0001.jpg"], ["unlink", "Pictures/IMG_0001.xmp"]]
    os.unlink(home / "Pictures" / "IMG_0001.jpg")  # killed before the .xmp's unlink
    state_dir().mkdir(parents=True)
    old = sqlite3.connect(state_dir() / "journal.sqlite")  # the schema of d01ca1f
    old.executescript(
        """
        CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL,
            finished REAL, src TEXT, dest TEXT, undone INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE moves (id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id),
            sources TEXT NOT NULL, keep_source INTEGER NOT NULL, state TEXT NOT NULL,
            steps TEXT NOT NULL DEFAULT '[]', finals TEXT,
            action TEXT NOT NULL DEFAULT 'move');
        CREATE INDEX moves_state ON moves(state);
        """
    )
    old.execute(  # Path.absolute(): the folder it was started in + the argument
        "INSERT INTO runs(kind, started, src, dest) VALUES ('classify', 0, ?, ?)",
        (str(home / "Pictures"), str(home / "Flowers")),
    )
    old.execute(
        "INSERT INTO moves(run, sources, keep_source, state, steps) VALUES (1, ?, 0, 'started', ?)",
        (json.dumps(["Pictures/IMG_0001.jpg", "Pictures/IMG_0001.xmp"]), json.dumps(steps)),
    )
    old.commit()
    old.close()
    monkeypatch.chdir(elsewhere)
    journal = Journal(state_dir())
    assert journal.recover() == 1
    journal.close()
    assert names(home / "Pictures") == [] and names(home / "Flowers") == [
        "IMG_0001.jpg",
        "IMG_0001.xmp",
    ]
    result = run("undo")  # from elsewhere too
    assert result.exit_code == 0, result.output
    assert names(home / "Pictures") == ["IMG_0001.jpg", "IMG_0001.xmp"]


def test_undo_from_an_exfat_stick_gives_a_photo_back_its_own_mode_owner_times_and_tags(tmp_path):
    """exFAT holds no mode, owner or tags (every file reads 0700 there with umask=077; without
    it, 0777, a private photo is not moved there): a private photo moved to a stick and
    undone must come back with its own."""
    import numpy as np

    src = tmp_path / "Pictures"
    photo = write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(3), True))
    (src / "IMG_0001.xmp").write_text("<xmp/>")
    for path in (photo, src / "IMG_0001.xmp"):
        os.chmod(path, 0o600)
        os.chown(path, 1234, 1234)
        os.utime(path, ns=(1_000_000_000, 1_500_000_000_123_456_789))
    os.setxattr(photo, "user.xdg.tags", b"garden")
    kept = {p.name: attrs.metadata(p) for p in src.iterdir()}
    with exfat(tmp_path / "stick", options="umask=077") as stick:
        dest = stick / "Flowers"
        assert classify(src, dest).exit_code == 0
        assert stat.S_IMODE((dest / "IMG_0001.jpg").stat().st_mode) != 0o600  # exFAT's own
        result = run("undo")
        assert result.exit_code == 0, result.output
    for path in src.iterdir():
        now, before = attrs.metadata(path), kept[path.name]
        assert {k: now[k] for k in ("mode", "uid", "gid", "mtime_ns", "xattrs")} == {
            k: before[k] for k in ("mode", "uid", "gid", "mtime_ns", "xattrs")
        }, path.name


def test_undo_keeps_a_mode_you_changed_in_the_target(tmp_path):
    """On a disk that keeps modes, a change made in the target since is the user's: kept."""
    import numpy as np

    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    photo = write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(3), True))
    os.chmod(photo, 0o600)
    assert classify(src, dest).exit_code == 0
    os.chmod(dest / "IMG_0001.jpg", 0o640)  # shared with the family by hand
    assert run("undo").exit_code == 0
    assert stat.S_IMODE(photo.stat().st_mode) == 0o640


def test_a_photo_edited_on_an_exfat_stick_comes_back_with_its_own_mode_and_the_edit(tmp_path):
    """Editing a photo on the stick changes its bytes and mtime, not its mode (exFAT has
    none): undo keeps the edit and its time but must not leave the private photo with the
    stick's mode (0700 with umask=077)."""
    import numpy as np

    src = tmp_path / "Pictures"
    photo = write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(3), True))
    os.chmod(photo, 0o600)
    with exfat(tmp_path / "stick", options="umask=077") as stick:
        dest = stick / "Flowers"
        assert classify(src, dest).exit_code == 0
        with open(dest / "IMG_0001.jpg", "ab") as f:  # edited in place
            f.write(b"\0edit")
        os.utime(dest / "IMG_0001.jpg", (2_000_000_000, 2_000_000_000))
        result = run("undo")
        assert result.exit_code == 0, result.output
    assert photo.read_bytes().endswith(b"\0edit")
    assert photo.stat().st_mtime == 2_000_000_000
    assert stat.S_IMODE(photo.stat().st_mode) == 0o600


def test_a_photo_moved_beside_one_of_the_same_name_in_another_case_takes_a_new_number(tmp_path):
    """Sidecars match their photo in any case: img_0001.jpg with its Live Photo's .MOV,
    moved beside another IMG_0001.JPG, made one group of the two there (a later sort of
    the target sent the .MOV with the other photo); it takes the numbered stem, in the dry
    run as in the real one, as it would on exFAT."""
    import numpy as np

    rng = np.random.default_rng(5)
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    write_photo(src / "img_0001.jpg", make_photo(rng, True))
    (src / "IMG_0001.MOV").write_bytes(b"live")
    (src / "Img_0001.AAE").write_bytes(b"edits")
    write_photo(dest / "IMG_0001.JPG", make_photo(rng, True))
    (dest / "img_0001.mov").write_bytes(b"its own live")
    planned = json.loads(classify(src, dest, "--dry-run").stdout.splitlines()[0])
    assert classify(src, dest).exit_code == 0
    assert names(dest) == [
        "IMG_0001.JPG",
        "img_0001 (1).AAE",
        "img_0001 (1).MOV",
        "img_0001 (1).jpg",
        "img_0001.mov",
    ]
    assert planned["detail"].endswith("img_0001 (1).jpg")
    assert run("undo").exit_code == 0
    assert names(src) == ["IMG_0001.MOV", "Img_0001.AAE", "img_0001.jpg"]


def test_a_dry_run_gives_a_sidecar_to_one_photo_only_as_the_move_does(tmp_path):
    """IMG_0004.jpg and img_0004.JPG (two photos on a case-sensitive disk) both match
    IMG_0004.xmp: the move takes it with the first; the dry run said it went with both."""
    import numpy as np

    rng = np.random.default_rng(8)
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    write_photo(src / "IMG_0004.jpg", make_photo(rng, True))
    write_photo(src / "img_0004.JPG", make_photo(rng, True))
    (src / "IMG_0004.xmp").write_text("<xmp/>")

    def said(result):
        assert result.exit_code == 0, result.output
        return sorted(
            (os.path.basename(o["detail"]), [os.path.basename(s) for s in o["sidecars"]])
            for o in map(json.loads, result.stdout.splitlines())
        )

    assert said(classify(src, dest, "--dry-run")) == said(classify(src, dest))


def test_a_private_photo_does_not_take_the_acl_its_new_folder_gives_new_files(tmp_path):
    """A shared folder whose default ACL lets user 4321 read new files: a 0640 photo of
    root's, moved there from another disk, is not readable by that user (as `mv` does, the
    copy keeps the source's ACL, here none, not the one the folder hands out)."""
    import struct

    import numpy as np

    def acl(*entries):  # the kernel's xattr form of a POSIX ACL: tag, permissions, id
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)

    anyone = 0xFFFFFFFF
    src = tmp_path / "Pictures"
    photo = write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(13), True))
    photo.chmod(0o640)
    with small_tmpfs(tmp_path / "shared", "4m") as shared:
        # owner rwx, user 4321 r-x, group r-x, mask r-x, others none
        default = acl(
            (1, 7, anyone), (2, 5, 4321), (4, 5, anyone), (16, 5, anyone), (32, 0, anyone)
        )
        try:
            os.setxattr(shared, "system.posix_acl_default", default)
        except OSError as e:
            pytest.skip(f"no POSIX ACLs on tmpfs: {e.strerror}")
        dest = shared / "Flowers"
        dest.mkdir()  # the shared folder the others open
        result = classify(src, dest)
        assert result.exit_code == 0, result.output
        moved = dest / "IMG_0001.jpg"
        assert stat.S_IMODE(moved.stat().st_mode) == 0o640
        folder = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)  # past tmp_path's 0700
        pid = os.fork()
        if pid == 0:  # user 4321 tries to read it
            try:
                os.setgid(4321)
                os.setuid(4321)
                os.open(moved.name, os.O_RDONLY, dir_fd=folder)
                os._exit(1)
            except PermissionError:
                os._exit(0)
            except BaseException:
                os._exit(2)
        os.close(folder)
        assert os.waitpid(pid, 0)[1] >> 8 == 0, "user 4321 could read the private photo"


def test_undo_of_a_move_finished_by_recovery_gives_back_each_file_its_mode(
    archive, tmp_path, monkeypatch
):
    """exFAT shows every file 0777: a move to it that a crash stopped and the next run's
    recovery finished is undone with each file's own mode, not 0777 (nor any other
    mode the stick shows), as an uninterrupted move is."""
    group_names = ("IMG_0001.jpg", "IMG_0001.xmp")
    finished = 0
    with exfat(tmp_path / "stick") as stick:
        for step in range(1, 21):
            src, dest = tmp_path / f"src{step}", stick / f"Flowers{step}"
            src.mkdir()
            dest.mkdir()
            for name, mode in zip(group_names, (0o644, 0o604)):
                shutil.copy2(archive / "a" / name, src / name)
                (src / name).chmod(mode)
            transfer_crashing_at(monkeypatch, step, [src / n for n in group_names], dest)
            Journal(state_dir()).recover()
            if names(src):  # rolled back
                continue
            finished += 1
            result = run("undo", *ROOT_ON_A_STICK)
            assert result.exit_code == 0, result.output
            modes = [stat.S_IMODE((src / n).stat().st_mode) for n in group_names]
            assert modes == [0o644, 0o604], step
    assert finished >= 3


def test_a_photo_private_by_its_folder_stays_and_the_dry_run_says_so(tmp_path):
    """A 0644 photo in a 0700 folder, a target everyone can open: the dry run says it
    would fail, as the run then does; the photo and its .xmp stay, whole, nothing lands
    in the target; a photo in an open folder moves."""
    import tempfile

    import numpy as np

    rng = np.random.default_rng(12)
    src = tmp_path / "Pictures"
    write_photo(src / "closed" / "IMG_0001.jpg", make_photo(rng, True))
    (src / "closed" / "IMG_0001.xmp").write_bytes(b"xmp")
    (src / "closed").chmod(0o700)
    open_tree = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp lets everyone in
    try:
        open_tree.chmod(0o755)
        write_photo(open_tree / "shared" / "IMG_0002.jpg", make_photo(rng, True))
        for photo in (src / "closed" / "IMG_0001.jpg", open_tree / "shared" / "IMG_0002.jpg"):
            photo.chmod(0o644)
        before = census(src)
        dest = open_tree / "Flowers"
        reason = (
            f"{dest} would let everyone read IMG_0001.jpg (a folder above it keeps them out "
            "where it is); not moved"
        )
        for dry_run in (True, False):
            extra = ["--dry-run"] if dry_run else []
            result = classify(src, dest, *extra)
            assert result.exit_code == 1, result.output
            (said,) = map(json.loads, result.stdout.splitlines())
            assert (said["action"], said["detail"]) == ("failed", reason)
            hint = "1 photo not moved: their folders keep other people out"
            assert result.stderr.count(hint) == 1, result.stderr  # what to do, said once
        assert census(src) == before and names(dest) == []
        result = run("classify", src, "--copy-to", dest, "--threshold", 0, "--workers", 1)
        assert result.exit_code == 1 and names(dest) == [], result.output
        assert result.stderr.count("1 photo not copied: their folders keep other people out") == 1
        result = classify(src, dest, "--keep-structure")  # Flowers/closed is not made
        assert result.exit_code == 1 and names(dest) == [], result.output
        result = classify(open_tree / "shared", dest)
        assert result.exit_code == 0 and names(dest) == ["IMG_0002.jpg"], result.output
    finally:
        shutil.rmtree(open_tree)


def classify_with_fault(
    src: Path, dest: Path, state: Path, calls: str, inject: str | None, log: str = os.devnull
):
    """A real classify of src into dest (threshold 0, one worker, no cache) under strace,
    which traces `calls` into `log` and makes the first of them fail as `inject` says
    ("error=EIO:when=2"; None: no fault, only the trace)."""
    cmd = [sys.executable, "-m", "flowersort", "classify", str(src), "--move-to", str(dest)]
    cmd += ["--threshold", "0", "--workers", "1", "--no-cache"]
    trace = ["strace", "-f", "-qq", "-o", log, "-e", f"trace={calls}"]
    if inject is not None:
        trace += ["-e", f"inject={calls.split(',')[0]}:{inject}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state)}
    return subprocess.run(trace + cmd, env=env, capture_output=True, text=True)


def test_a_target_that_refuses_the_dates_leaves_the_photo_in_place_and_says_why(tmp_path):
    """A user's copy on a stick whose files belong to root cannot take the photo's dates
    (utimensat: EPERM, injected by strace): the photo and its sidecar stay whole, nothing
    is left on the stick, and the line says why instead of a bare 'Operation not
    permitted'."""
    import numpy as np

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = tmp_path / "Pictures"
    write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(13), True))
    (src / "IMG_0001.xmp").write_bytes(b"xmp")
    before = census(src)
    with small_tmpfs(tmp_path / "stick", "4m") as stick:
        dest = stick / "Flowers"
        result = classify_with_fault(src, dest, tmp_path / "state", "utimensat", "error=EPERM")
        assert result.returncode == 1, result.stderr
        why = f"{dest} cannot keep the dates of IMG_0001.jpg (not permitted: its files there"
        assert why in result.stderr, result.stderr
        assert names(dest) == []
    assert census(src) == before


def test_a_copy_that_cannot_take_the_photos_mode_is_not_a_move(tmp_path):
    """fchmod of the copy on another disk fails (EIO, injected by strace): the copy would
    stay 0600, shutting out the group and others who could read the 0644 photo; so the
    photo stays in place, whole, nothing is left on the other disk, and the line says why."""
    import numpy as np

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = tmp_path / "Pictures"
    write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(13), True))
    (src / "IMG_0001.jpg").chmod(0o644)
    before = census(src)
    with small_tmpfs(tmp_path / "other", "4m") as other:
        dest = other / "Flowers"
        result = classify_with_fault(src, dest, tmp_path / "state", "fchmod", "error=EIO")
        assert result.returncode == 1, result.stderr
        assert "cannot give the copy the photo's mode (Input/output error)" in result.stderr
        assert names(dest) == []
    assert census(src) == before
    assert stat.S_IMODE((src / "IMG_0001.jpg").stat().st_mode) == 0o644


def test_a_temporary_that_cannot_be_removed_does_not_fail_a_finished_move(tmp_path):
    """Across filesystems, the temporary copy's unlink after its final name was linked
    fails (EIO, injected by strace at that very call): the move is done (the final name
    holds the bytes, the source is removed), not reported failed with photo, copy and
    temporary all left; a warning names the temporary."""
    import numpy as np

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = tmp_path / "Pictures"
    write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(13), True))
    before = census(src)
    with small_tmpfs(tmp_path / "other", "4m") as other:
        dest = other / "Flowers"
        log = tmp_path / "trace"
        clean = classify_with_fault(src, dest, tmp_path / "dry", "unlink,unlinkat", None, str(log))
        assert clean.returncode == 0, clean.stderr
        seen: dict[str, int] = {}
        at = None
        for line in log.read_text().splitlines():
            if m := re.search(r"\b(unlinkat|unlink)\((.*)\)\s+= ", line):
                seen[m[1]] = seen.get(m[1], 0) + 1
                if copying.TMP_PREFIX in m[2]:
                    at = (m[1], seen[m[1]])
                    break
        assert at, "no unlink of a temporary in a clean run"
        shutil.rmtree(dest)
        write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(13), True))
        assert census(src) == before
        fault = f"error=EIO:when={at[1]}"
        result = classify_with_fault(src, dest, tmp_path / "state", at[0], fault)
        assert result.returncode == 0, result.stderr
        assert "1 moved" in result.stderr
        assert "warning: could not remove the temporary file" in result.stderr
        # the temporary left is another name of the final file, not a copy of its own
        (leftover,) = [p for p in dest.iterdir() if p.name.startswith(copying.TMP_PREFIX)]
        assert leftover.samefile(dest / "IMG_0001.jpg")
        leftover.unlink()
        assert census(dest) == before and not list(src.rglob("*.jpg"))


def test_undo_puts_photos_back_into_the_open_folder_they_came_from(tmp_path):
    """Sorted from a folder everyone can open into a closed one (that narrows who can
    read them: allowed), then undone: each photo goes back where it was, as readable as
    it was there, not refused as if the way back exposed it."""
    import tempfile

    import numpy as np

    rng = np.random.default_rng(13)
    closed = tmp_path / "private"
    closed.mkdir(mode=0o700)
    dest = closed / "Flowers"
    open_tree = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp lets everyone in
    try:
        open_tree.chmod(0o755)
        src = open_tree / "card"
        write_photo(src / "IMG_0001.jpg", make_photo(rng, True))
        (src / "IMG_0001.xmp").write_bytes(b"xmp")
        for p in src.iterdir():
            p.chmod(0o644)
        before = census(src)
        result = classify(src, dest)
        assert result.exit_code == 0 and names(dest) == ["IMG_0001.jpg", "IMG_0001.xmp"]
        plan = run("undo", "--dry-run")
        assert plan.exit_code == 0, plan.output
        result = run("undo")
        assert result.exit_code == 0, result.output
        assert census(src) == before and not dest.exists()  # the folder it made goes too
    finally:
        shutil.rmtree(open_tree)


def test_a_dedupe_that_would_expose_a_sidecar_is_predicted_by_the_dry_run(tmp_path):
    """--on-conflict dedupe: the photo's twin is already in an open DEST, but its .xmp,
    private by its folder, would have to move there: the run leaves the group in SRC, and
    the dry run says so, in the same words."""
    import tempfile

    import numpy as np

    rng = np.random.default_rng(14)
    closed = tmp_path / "private"
    write_photo(closed / "IMG_0001.jpg", make_photo(rng, True))
    (closed / "IMG_0001.xmp").write_bytes(b"xmp")
    for p in closed.iterdir():
        p.chmod(0o644)
    closed.chmod(0o700)
    open_tree = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp lets everyone in
    try:
        open_tree.chmod(0o755)
        dest = open_tree / "Flowers"
        dest.mkdir()
        shutil.copy(closed / "IMG_0001.jpg", dest / "IMG_0001.jpg")
        before = census(closed, dest)
        said = []
        for dry_run in (True, False):
            extra = ["--dry-run"] if dry_run else []
            result = classify(closed, dest, "--on-conflict", "dedupe", *extra)
            assert result.exit_code == 1, result.output
            (line,) = map(json.loads, result.stdout.splitlines())
            said.append((line["action"], line["detail"]))
        assert (
            said[0]
            == said[1]
            == (
                "failed",
                f"{dest} would let everyone read IMG_0001.xmp (a folder above it keeps them out "
                "where it is); not moved",
            )
        )
        assert census(closed, dest) == before
    finally:
        shutil.rmtree(open_tree)


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


WOULD = {"would-review": "review", "would-copy": "copied", "would-move": "moved"}


def test_a_dry_run_of_a_review_names_the_files_the_real_run_gives(archive, tmp_path):
    dest, review = tmp_path / "Flowers", tmp_path / "Review"
    (review / "a").mkdir(parents=True)
    (review / "IMG_0001.jpg").write_bytes(b"another photo of that name")  # a clash
    band = ("--review-to", review, "--review-band", 1)  # every photo borderline
    plan = classify(archive, dest, *band, "--dry-run")
    done = classify(archive, dest, *band)
    assert plan.exit_code == done.exit_code == 0, plan.output + done.output
    planned = [{**o, "action": WOULD.get(o["action"], o["action"])} for o in _lines(plan)]
    assert [o["action"] for o in _lines(plan)] == ["would-review"] * 2
    assert planned == _lines(done)
    assert {o["detail"] for o in planned} == {
        str(review / "IMG_0001 (1).jpg"),
        str(review / "IMG_0001 (2).jpg"),
    }
    assert [len(o["sidecars"]) for o in planned] == [3, 0]  # a's .CR2, .xmp, .jpg.json


def test_a_dry_run_of_a_second_copy_says_already_there_as_the_run_does(
    archive, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    dest = Path("Flowers")  # relative: the journal's names are absolute, the walk's are not
    copy = ("--copy-to", dest, "--threshold", 0, "--json", "--workers", 1)
    assert run("classify", archive, *copy).exit_code == 0
    plan = run("classify", archive, *copy, "--dry-run")
    done = run("classify", archive, *copy)
    assert [o["action"] for o in _lines(done)] == ["already-there"] * 2
    assert _lines(plan) == _lines(done)  # the same twin, named the same way


@pytest.mark.parametrize(
    "flower, borderline, target, review, vetoed, confirmed, expected",
    [
        (True, False, True, False, False, False, "move"),
        (False, False, True, True, False, False, "keep"),
        (True, False, False, True, False, False, "keep"),  # no target: listed only
        (True, True, False, True, False, False, "keep"),
        (True, True, True, True, False, False, "review"),
        (False, True, True, False, False, False, "borderline"),
        (True, True, True, True, False, True, "confirmed"),
        (True, True, True, True, True, True, "vetoed"),
        (True, False, True, False, True, False, "vetoed"),
    ],
)
def test_decide(flower, borderline, target, review, vetoed, confirmed, expected):
    from flowersort.sorting.decide import decide

    got = decide(
        flower,
        borderline,
        has_target=target,
        has_review=review,
        vetoed=vetoed,
        confirmed=confirmed,
    )
    assert got == expected


def test_a_sort_run_holds_the_lock_until_its_with_block_ends(archive, tmp_path):
    from flowersort.model.file import default_model_path, load_model
    from flowersort.sorting.options import SortOptions, WalkOptions
    from flowersort.sorting.sorter import SortRun, count_photos

    model = load_model(default_model_path())
    options = SortOptions(dest=tmp_path / "Flowers", threshold=0.0, workers=1)
    with SortRun(model, archive, options) as sort_run:
        first = next(iter(sort_run))  # stopped half-way: one photo of two
        with pytest.raises(LockHeld):
            RunLock(state_dir())
    assert first.action == "moved"
    RunLock(state_dir()).release()  # released by the with block, not by the collector
    walk_options = WalkOptions(exclude=("b",))
    assert count_photos(archive, options.targets, walk_options) == 0  # a's photo moved
    assert count_photos(archive, options.targets, WalkOptions()) == 1
