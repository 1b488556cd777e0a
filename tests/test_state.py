"""The journal, the lock and the score cache when they cannot be used: a full disk, a
folder that is a file or read-only, a damaged journal, no HOME. Each is one line and exit
2, nothing is moved unless the journal can be written, nothing is left half-moved; a dry
run needs no state at all."""

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowersort.cli.app import cli
from flowersort.safefs import copies
from flowersort.sorting import journal as journal_module
from tests.conftest import census, make_archive
from tests.runs import other_filesystem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def src(tmp_path) -> Path:
    root = make_archive(tmp_path / "Pictures", 8, seed=4)
    for photo in sorted(root.glob("p*.jpg"))[::2]:
        photo.with_suffix(".xmp").write_text(f"<xmp of='{photo.name}'/>")
    return root


def classify(src: Path, dest: Path, model: Path, *extra):
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--model", model]
    return CliRunner().invoke(cli, [str(a) for a in [*args, "--workers", 1, *extra]])


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_whole(before: Counter, *roots: Path) -> None:
    """Every file exactly once, no temporary, no hard-link twin."""
    assert census(*roots) == before
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(copies.TMP_PREFIX)]
    assert all(p.stat().st_nlink == 1 for p in files)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write, root included: a read-only tmpfs (or mode 500)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
        yield folder
        folder.chmod(0o700)
        return
    yield from mounted("ro,size=64k")


def mounted(options: str):
    """A tmpfs mounted outside pytest's temporary folders (which other pytest sessions may
    clean up), unmounted and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="flowersort-test-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", folder]).returncode:
        folder.rmdir()
        pytest.skip("cannot mount a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", folder], check=True)  # -l: even if a run left it busy
        folder.rmdir()


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_unusable_state_folder_is_one_line_exit_2_and_moves_nothing(
    kind, src, tmp_path, trained_model, monkeypatch, request
):
    if kind == "a file":
        state = tmp_path / "state-file"
        state.write_text("not a folder")
    else:
        state = request.getfixturevalue("read_only_dir")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    before = census(src)
    result = classify(src, tmp_path / "Flowers", trained_model)
    assert result.exit_code == 2, result.output
    assert "cannot use the state folder" in one_error_line(result)
    assert census(src) == before
    # a dry run needs no state at all
    result = classify(src, tmp_path / "Flowers", trained_model, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("would move") == 8


def test_missing_state_folder_is_created(src, tmp_path, trained_model, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "not" / "yet"))
    result = classify(src, tmp_path / "Flowers", trained_model)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "not" / "yet" / "flowersort" / "journal.sqlite").is_file()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_journal_is_set_aside_and_the_next_run_works(
    damage, src, tmp_path, trained_model, state_home
):
    other = make_archive(tmp_path / "Other", 4, seed=5)
    assert classify(other, tmp_path / "Earlier", trained_model).exit_code == 0
    path = state_home / "flowersort" / "journal.sqlite"
    if damage == "garbage":
        path.write_bytes(os.urandom(20_000))
    else:
        size = path.stat().st_size
        assert size > 4096
        os.truncate(path, size // 2)
    damaged = path.read_bytes()
    before = census(src)
    result = classify(src, tmp_path / "Flowers", trained_model)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "damaged" in line and "set aside" in line and "can no longer be undone" in line
    assert census(src) == before
    aside = [p for p in path.parent.iterdir() if p.name.startswith("journal.sqlite.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # renamed, not deleted
    result = classify(src, tmp_path / "Flowers", trained_model)
    assert result.exit_code == 0, result.output
    assert not list(src.glob("p*.jpg"))


def test_undo_with_a_damaged_journal(tmp_path, trained_model, state_home):
    (state_home / "flowersort").mkdir(parents=True)
    (state_home / "flowersort" / "journal.sqlite").write_bytes(b"SQLite format 2\0" * 100)
    result = CliRunner().invoke(cli, ["undo"])
    assert result.exit_code == 2, result.output
    assert "set aside" in one_error_line(result)


@pytest.mark.parametrize("where", ["XDG_CACHE_HOME", "--cache"])
@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_unusable_cache(where, kind, src, tmp_path, trained_model, monkeypatch, request):
    if kind == "a file":
        folder = tmp_path / "cache-file"
        folder.write_text("not a folder")
    else:
        folder = request.getfixturevalue("read_only_dir")
    extra = []
    if where == "--cache":
        extra = ["--cache", str(folder / "scores.sqlite")]
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    before = census(src)
    result = classify(src, tmp_path / "Flowers", trained_model, *extra)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "cannot use the score cache" in line and "--no-cache" in line
    assert census(src) == before
    # a dry run goes on without the cache, and says so once
    result = classify(src, tmp_path / "Flowers", trained_model, "--dry-run", *extra)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("would move") == 8
    assert result.stderr.count("running without the score cache") == 1


def test_no_home(src, tmp_path, trained_model):
    """HOME unset, for a user the passwd file does not know (as in some containers)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as a user without a passwd entry")
    # outside pytest's folders, whose modes another pytest session may reset meanwhile
    tmp_path = Path(tempfile.mkdtemp(prefix="flowersort-no-home-"))
    tmp_path.chmod(0o755)  # let the stranger reach the files
    src = Path(shutil.copytree(src, tmp_path / "src"))
    trained_model = Path(shutil.copy(trained_model, tmp_path / "model.npz"))
    for path in [src, *src.iterdir(), trained_model]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o777)  # mkdir's mode is cut by the umask: the target's folder
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
    env = {k: v for k, v in env.items() if k != "XDG_CACHE_HOME"} | {"PYTHONPATH": str(ROOT)}
    stranger = ["setpriv", "--reuid", "54321", "--regid", "54321", "--clear-groups"]
    cmd = [*stranger, sys.executable, "-m", "flowersort", "classify", str(src), "--threshold"]
    cmd += ["0", "--workers", "1", "--model", str(trained_model), "--move-to"]
    cmd += [str(tmp_path / "out" / "Flowers")]
    before = census(src)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "HOME is not set" in line], proc.stderr
    assert census(src) == before
    proc = subprocess.run(
        [*cmd, "--dry-run"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("would move") == 8
    assert proc.stderr.count("running without the score cache") == 1
    shutil.rmtree(tmp_path)


@pytest.fixture
def small_state_disk(tmp_path, monkeypatch):
    """XDG_STATE_HOME on a 4 MiB tmpfs; fill(free) leaves that many KiB free."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    disk = mounted("size=4m")
    state = next(disk)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))

    def fill(free_kib: int) -> Path:
        filler = state / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # full
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - free_kib * 1024))
        return filler

    yield fill
    next(disk, None)  # unmount


@pytest.mark.parametrize("free_kib", [0, 300, 400])
def test_full_disk_at_the_state_folder(free_kib, small_state_disk, src, tmp_path, trained_model):
    filler = small_state_disk(free_kib)
    dest = tmp_path / "Flowers"
    before = census(src)
    result = classify(src, dest, trained_model, "--no-cache")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)  # the journal or the corrections beside it: both state
    assert "cannot write the journal" in line or "cannot write the corrections file" in line
    assert_whole(before, src, dest)
    moved = result.stdout.count("moved: ")
    if free_kib:  # the disk filled up half-way through the run
        assert 0 < moved < 8
    else:
        assert moved == 0
    filler.unlink()  # space again: the next run finishes the job
    result = classify(src, dest, trained_model, "--no-cache")
    assert result.exit_code == 0, result.output
    assert_whole(before, src, dest)
    assert not list(src.glob("p*"))


class FailingConnection:
    """A journal connection whose writes fail from the nth on, as on a full disk."""

    def __init__(self, conn, fail_from: int):
        self.conn, self.fail_from, self.writes = conn, fail_from, 0

    def execute(self, sql, params=()):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            self.writes += 1
            if self.writes >= self.fail_from:
                raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self.conn, name)


class FailingSqlite:
    """The sqlite3 module as the journal sees it: its connections fail from the nth write."""

    def __init__(self, connect, fail_from: int):
        self.real_connect, self.fail_from = connect, fail_from

    def connect(self, *args, **kwargs):
        return FailingConnection(self.real_connect(*args, **kwargs), self.fail_from)

    def __getattr__(self, name):
        return getattr(sqlite3, name)


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_a_journal_write_failing_at_every_step_leaves_every_photo_whole(
    across, src, tmp_path, trained_model, monkeypatch
):
    if across and other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    import tempfile

    dest_parent = Path(tempfile.mkdtemp(dir=other_filesystem())) if across else tmp_path
    connect = sqlite3.connect
    before = census(src)
    try:
        for fail_from in range(1, 26):  # the run, then each step of the first groups
            dest = dest_parent / f"Flowers{fail_from}"
            monkeypatch.setattr(journal_module, "sqlite3", FailingSqlite(connect, fail_from))
            result = classify(src, dest, trained_model, "--no-cache")
            monkeypatch.setattr(journal_module, "sqlite3", sqlite3)
            assert result.exit_code == 2, (fail_from, result.output)
            assert "cannot write the journal" in one_error_line(result)
            assert_whole(before, src, dest)
            # put everything back for the next round (the real journal then recovers)
            for path in dest.iterdir() if dest.exists() else []:
                os.rename(path, src / path.name) if not across else shutil.move(path, src)
            # ... which is not the user vetoing them (that is learnt beside the journal)
            for path in journal_module.state_dir().glob("corrections.sqlite*"):
                path.unlink()
    finally:
        if across:
            shutil.rmtree(dest_parent)


def test_a_long_journal_is_not_read_whole_for_each_photo_moved(tmp_path):
    """Years of nightly runs leave many moves in the journal (about 490 bytes each); before
    each move a run asks where an earlier run put the photo. That must be a look-up, not a
    read of every move: SQLite's progress handler counts the steps of one query."""
    folder = tmp_path / "state"
    journal = journal_module.Journal(folder)
    run = journal.start_run("classify", tmp_path / "Pictures", tmp_path / "Flowers")
    rows = [
        (run, f'["{tmp_path}/Pictures/{i:05d}.jpg"]', f'["{tmp_path}/Flowers/{i:05d}.jpg"]')
        for i in range(5000)
    ]
    journal.db.execute("BEGIN")  # one commit (each would be synced)
    journal.db.executemany(
        "INSERT INTO moves(run, sources, keep_source, state, finals) VALUES (?, ?, 0, 'done', ?)",
        rows,
    )
    journal.db.execute("COMMIT")
    steps = []
    journal.db.conn.set_progress_handler(lambda: steps.append(1), 100)
    found = journal.earlier_final(tmp_path / "Pictures" / "04321.jpg", tmp_path / "Flowers")
    journal.db.conn.set_progress_handler(None, 0)
    assert found == tmp_path / "Flowers" / "04321.jpg"
    assert len(steps) < 10, f"{len(steps) * 100} SQLite steps for one look-up"
    odd = tmp_path / "Pictures" / os.fsdecode(b"\xff.jpg")  # not UTF-8: still found
    journal.db.execute(
        "INSERT INTO moves(run, sources, keep_source, state, finals) VALUES (?, ?, 0, 'done', ?)",
        (
            run,
            journal_module.encode_paths([odd]),
            journal_module.encode_paths([tmp_path / "Flowers" / "x.jpg"]),
        ),
    )
    assert journal.earlier_final(odd, tmp_path / "Flowers") == tmp_path / "Flowers" / "x.jpg"
    journal.close()


def test_a_cache_that_fills_its_disk_during_a_run_says_so_once(tmp_path, caplog):
    """The cache opened, then its disk filled: scores can no longer be remembered (every
    later night decodes them again), which the run says once rather than only in --verbose."""
    import logging

    from flowersort.scoring.cache import COMMIT_EVERY, ScoreCache
    from tests.conftest import small_tmpfs

    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        cache = ScoreCache(disk / "scores.sqlite", "model")
        with open(disk / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 4096)
        with caplog.at_level(logging.WARNING, logger="flowersort"):
            try:
                for i in range(2 * COMMIT_EVERY + 1):
                    cache.put(tmp_path / f"IMG_{i:05d}.jpg", (i, i, i), 0.5, "")
            finally:
                cache.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert "score cache" in lines[0] and "not remembered" in lines[0]
