"""Real signals against a real run: SIGTERM (`kill PID`) and Ctrl-C (SIGINT to the whole
process group) finish the group in hand, start no other, stop the workers, print the
summary and exit 130 or 143, leaving nothing for recovery; SIGKILL of the main process
takes its workers with it, and they never hold the run lock."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from flowersort.safefs import copies
from tests.conftest import census
from tests.runs import ROOT, children, make_archive, other_filesystem


def command(src: Path, dest: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "flowersort", "classify", str(src), "--move-to", str(dest)] + [
        "--threshold",
        "0",
        "--workers",
        str(workers),
    ]


def environment(state: Path) -> dict:
    return {
        **os.environ,
        "XDG_STATE_HOME": str(state),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",  # each "moved:" line as it happens
    }


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_moves(proc: subprocess.Popen, n: int) -> None:
    moved = 0
    while moved < n:
        line = proc.stdout.readline()
        assert line, "the run ended before it was interrupted"
        moved += line.startswith("moved: ")


def kill_leftovers(pids: list[int]) -> None:
    """A failing test leaves no orphan worker behind."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def unfinished_moves(state: Path) -> int:
    db = sqlite3.connect(state / "flowersort" / "journal.sqlite")
    try:
        return db.execute("SELECT count(*) FROM moves WHERE state = 'started'").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def across(tmp_path):
    """A target on another filesystem (a tmpfs), so each move is a copy: longer, with more
    steps to interrupt."""
    if other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    parent = Path(tempfile.mkdtemp(dir=other_filesystem()))
    yield parent / "Flowers"
    shutil.rmtree(parent)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_cleanly(signum, tmp_path, across, state_home):
    src = tmp_path / "Pictures"
    make_archive(src, 300)
    photos = len(list(src.rglob("*.jpg")))
    before = census(src)
    proc = subprocess.Popen(
        command(src, across),
        env=environment(state_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    wait_for_moves(proc, 10)
    workers = children(proc.pid)
    assert len(workers) == 2
    if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole group
        os.killpg(proc.pid, signum)
    else:  # kill PID
        proc.send_signal(signum)
    watchdog = threading.Timer(60, proc.kill)  # a run that does not stop fails, not hangs
    watchdog.start()
    try:
        # read on from the buffered pipe: communicate() reads the raw pipe, and would lose
        # the lines readline() has already taken in but not yet returned
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
        time.sleep(0.5)
    finally:
        watchdog.cancel()
        kill_leftovers(workers)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"stopped by {signal.Signals(signum).name}" in err
    moved = 10 + out.count("moved: ")
    assert f"{moved} photos: {moved} moved" in err  # the summary
    assert f"; {photos - moved} photos not looked at (stopped)" in err
    assert moved < photos  # the signal interrupted the run
    assert not any(alive(pid) for pid in workers)
    assert unfinished_moves(state_home) == 0  # nothing left for recovery
    assert census(src, across) == before
    assert not [p for p in across.iterdir() if p.name.startswith(copies.TMP_PREFIX)]
    assert len(list(src.rglob("*.jpg"))) == photos - moved
    # every group whole: each moved photo's sidecar went with it
    for xmp in src.rglob("*.xmp"):
        assert xmp.with_suffix(".jpg").exists()


def archive_with_sidecars(src: Path) -> Path:
    """20 photos, each with an .xmp: every move is a group of two."""
    make_archive(src, 20)
    for photo in src.rglob("*.jpg"):
        photo.with_suffix(".xmp").write_text(f"<xmp of='{photo.name}'/>")
    return src


def test_a_signal_in_the_middle_of_a_group_finishes_that_group(tmp_path, state_home):
    """strace sends SIGTERM as the run links the first file of its third group (each photo
    has a sidecar): that group is completed, no fourth is started."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = archive_with_sidecars(tmp_path / "Pictures")
    dest = tmp_path / "Flowers"
    before = census(src)
    trace = ["strace", "-o", os.devnull, "-e", "trace=link,linkat"]
    trace += ["-e", "inject=link,linkat:signal=TERM:when=5"]  # links 1-4: groups 1 and 2
    proc = subprocess.run(
        trace + command(src, dest, workers=1),
        env=environment(state_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "ptrace" in proc.stderr and proc.returncode != 143:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 143, proc.stderr
    assert "stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.count("moved: ") == 3
    assert sorted(p.suffix for p in dest.iterdir()) == [".jpg"] * 3 + [".xmp"] * 3
    assert unfinished_moves(state_home) == 0
    assert census(src, dest) == before


def test_a_signal_during_undo_finishes_the_photo_in_hand(tmp_path, state_home):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = archive_with_sidecars(tmp_path / "Pictures")
    dest = tmp_path / "Flowers"
    before = census(src)
    env = environment(state_home)
    moved = subprocess.run(command(src, dest, workers=1), env=env, capture_output=True, text=True)
    assert moved.returncode == 0, moved.stderr
    undo = [sys.executable, "-m", "flowersort", "undo"]
    trace = ["strace", "-o", os.devnull, "-e", "trace=link,linkat"]
    trace += ["-e", "inject=link,linkat:signal=TERM:when=5"]  # in the third group
    proc = subprocess.run(trace + undo, env=env, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and proc.returncode != 143:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 143, proc.stderr
    assert "stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.count("restored: ") == 3
    assert len(list(src.rglob("*.jpg"))) == len(list(src.rglob("*.xmp"))) == 3
    assert unfinished_moves(state_home) == 0
    assert census(src, dest) == before
    listing = [sys.executable, "-m", "flowersort", "undo", "--list", "--json"]
    runs = subprocess.run(listing, env=env, capture_output=True, text=True, check=True)
    assert [json.loads(line)["state"] for line in runs.stdout.splitlines()] == ["partly undone"]
    table = subprocess.run(listing[:-1], env=env, capture_output=True, text=True, check=True)
    assert "  partly undone  " in table.stdout
    finish = subprocess.run(undo, env=env, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr
    runs = subprocess.run(listing, env=env, capture_output=True, text=True, check=True)
    assert [json.loads(line)["state"] for line in runs.stdout.splitlines()] == ["undone"]
    assert census(src) == before


def open_files(pid: int) -> list[Path]:
    """What the process has open; a descriptor closed while listed (a worker reading the
    next photo) is left out."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(Path(os.readlink(fd)))
        except FileNotFoundError:
            continue
    return out


def test_sigkill_takes_the_workers_along_and_leaves_the_lock_free(tmp_path, state_home):
    src = tmp_path / "Pictures"
    make_archive(src, 300)
    before = census(src)
    dest = tmp_path / "Flowers"
    env = environment(state_home)
    proc = subprocess.Popen(command(src, dest), env=env, stdout=subprocess.PIPE, text=True)
    wait_for_moves(proc, 5)
    workers = children(proc.pid)
    assert len(workers) == 2
    lock = state_home / "flowersort" / "lock"
    for pid in workers:  # the run holds the lock, its workers do not
        assert lock not in open_files(pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if alive(pid)]
    kill_leftovers(survivors)
    assert not survivors
    rerun = subprocess.run(command(src, dest), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr  # not 3: nobody holds the lock
    assert census(src, dest) == before


def test_the_signal_exit_codes_are_documented():
    from click.testing import CliRunner

    from flowersort.base.errors import EXIT_MEANING
    from flowersort.cli.app import cli

    assert EXIT_MEANING["130/143"].startswith("stopped by SIGINT/SIGTERM")
    for name in ("classify", "undo"):
        text = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
        assert "130/143 stopped by SIGINT/SIGTERM" in text and "exit 130 or 143" in text
    assert "`130` or `143`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", ["INT", "TERM"])
def test_a_signal_while_the_command_still_loads_is_one_line(tmp_path, name):
    """strace sends the signal as the command opens numpy's first file (it loads before
    any command has its own handling): one line and exit 130 or 143, no traceback."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    cmd = [sys.executable, "-m", "flowersort", "--help"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "openat.log"
    trace = ["strace", "-qq", "-e", "trace=openat"]
    subprocess.run([*trace, "-o", str(log), *cmd], env=env, capture_output=True, check=True)
    opened = [line for line in log.read_text().splitlines() if "openat(" in line]
    n = next(i for i, line in enumerate(opened, 1) if "numpy" in line)
    inject = f"inject=openat:signal={name}:when={n}"
    result = subprocess.run(
        [*trace, "-o", "/dev/null", "-e", inject, *cmd], env=env, capture_output=True, text=True
    )
    assert result.returncode == 128 + signal.Signals[f"SIG{name}"], result.stderr
    assert result.stderr.splitlines() == [f"stopped by SIG{name}"]
    assert result.stdout == ""  # stopped before the help


def test_an_error_on_the_way_out_of_a_signal_still_says_the_signal(caplog):
    """A signal's stop can break what it interrupts (the queue of a training's epochs,
    cut in the middle of a message, then fails with EBADF): the signal is still the one
    line and the exit code, not the error it caused."""
    from flowersort.base.errors import UnexpectedError
    from flowersort.cli.console import CliError, Stopped, stops_on_signals

    @stops_on_signals
    def command():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Stopped:
            error = UnexpectedError("unexpected OSError: [Errno 9] Bad file descriptor")
            raise CliError(error) from None

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped:
            command()
    finally:  # a stopped command leaves the signals ignored: its process is ending
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert stopped.value.code == 143
    assert caplog.messages[-1] == "stopped by SIGTERM"


@pytest.mark.parametrize(
    "signum,to_group,code",
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143), (signal.SIGKILL, False, None)],
    ids=["Ctrl-C", "SIGTERM", "SIGKILL"],
)
def test_a_signal_during_train_stops_it_with_one_line(examples, tmp_path, signum, to_group, code):
    """Ctrl-C reaches the whole process group (the nets' workers and their queue's manager
    too), `kill PID` the main process only: either way one line, exit 130 or 143, and no
    process of the run left; SIGKILL takes the workers with it."""
    model = tmp_path / "model.npz"
    cmd = [sys.executable, "-m", "flowersort", "train", *map(str, examples), "--model", str(model)]
    cmd += ["--members", "3", "--workers", "2", "--epochs", "5000", "--patience", "5000"]
    cmd += ["--no-feature-cache"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "stderr"  # a file: a pipe would be held open by orphaned workers
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stderr=stderr, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while "photos read" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # then the nets are being trained
        while len(pids := children(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the manager of the epochs' queue and two workers
        assert len(pids) == 3, pids
        time.sleep(0.5)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        assert proc.wait(timeout=10) == (code or -signum), log.read_text()
        deadline = time.monotonic() + 5
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in pids), "a process of the run lives on"
        if code is not None:
            err = log.read_text().strip().splitlines()
            assert err[-1] == f"stopped by {signal.Signals(signum).name}", err
            assert "Traceback" not in log.read_text() and "Aborted" not in log.read_text()
        assert not model.exists() and not list(tmp_path.glob(".model-*"))
    finally:
        kill_leftovers([proc.pid, *pids])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # and anything else of its session


def test_a_second_signal_does_not_cut_short_the_stop_of_the_first(caplog):
    """Ctrl-C pressed twice (or SIGINT to the whole group, then SIGTERM): the clean-up
    the first one started (killing the nets' workers, shutting their pool) runs to its
    end; cut short, a worker lived on and the run hung at exit, waiting for it."""
    from flowersort.cli.console import stops_on_signals

    cleaned = []

    @stops_on_signals
    def command():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the second, while the first is stopping
            time.sleep(0.1)
            cleaned.append(True)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped:
            command()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert cleaned == [True]
    assert stopped.value.code == 130
    assert caplog.messages[-1] == "stopped by SIGINT"
