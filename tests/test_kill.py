"""Real crashes: a classify run killed with SIGKILL at many moments, then a recovery run."""

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flowersort.safefs import copies
from flowersort.sorting.journal import Journal
from tests.conftest import ROOT_ON_A_STICK, census, exfat
from tests.runs import (
    classify_cmd,
    env_with,
    in_flight,
    last_move,
    make_archive,
    other_filesystem,
)


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_sigkill_at_many_moments_loses_nothing(tmp_path, across, state_home):
    """Six SIGKILLs, each sent once the journal shows a move started and counted only if
    that move was still in flight after the kill (a kill between moves proves nothing)."""
    if across and other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    src = tmp_path / "Pictures"
    make_archive(src, 200)
    dest_parent = Path(tempfile.mkdtemp(dir=other_filesystem())) if across else tmp_path
    dest = dest_parent / "Flowers"
    before = census(src)
    env = env_with(state_home)
    interrupted = tries = 0
    try:
        while interrupted < 6 and tries < 30:
            tries += 1
            last = last_move(state_home)
            proc = subprocess.Popen(classify_cmd(src, dest), env=env, stderr=subprocess.DEVNULL)
            while proc.poll() is None and in_flight(state_home, after=last) == 0:
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL, "the run ended before a move started"
            interrupted += in_flight(state_home, after=last) > 0
        assert interrupted == 6, f"only {interrupted} of {tries} kills interrupted a move"
        final = subprocess.run(classify_cmd(src, dest), env=env, capture_output=True, text=True)
        assert final.returncode == 0, final.stderr
        assert census(src, dest) == before  # every photo exactly once, byte-identical
        leftovers = [p for p in dest.rglob("*") if p.name.startswith(copies.TMP_PREFIX)]
        assert leftovers == []
        assert not [p for p in src.rglob("*.jpg")]  # all moved in the end (threshold 0)
    finally:
        if across:
            shutil.rmtree(dest_parent)


def test_a_second_run_while_one_moves_is_locked_out_or_waits(tmp_path, state_home):
    """Run A is stopped (SIGSTOP) in the middle of its moves, holding the lock: B without
    --wait exits 3 at once, B with --wait waits until A has finished, then both end well."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    make_archive(src, 200)
    before = census(src)
    env = env_with(state_home)
    a = subprocess.Popen(classify_cmd(src, dest), env=env)
    try:
        while last_move(state_home) == 0:  # A is moving: it holds the lock
            assert a.poll() is None, "run A ended before it moved a photo"
            time.sleep(0.005)
        a.send_signal(signal.SIGSTOP)
        # at once: not after the score cache's busy timeout (A, stopped, may hold its write lock)
        b = subprocess.run(
            classify_cmd(src, dest), env=env, capture_output=True, text=True, timeout=20
        )
        assert b.returncode == 3, b.stderr
        assert "another flowersort run" in b.stderr
        waiting = subprocess.Popen([*classify_cmd(src, dest), "--wait"], env=env)
        time.sleep(2)
        assert waiting.poll() is None  # still waiting for A
        a.send_signal(signal.SIGCONT)
        assert a.wait(timeout=120) == 0 and waiting.wait(timeout=120) == 0
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
    assert census(src, dest) == before


CALLS = ("link", "linkat", "unlink", "unlinkat", "rename", "renameat", "renameat2")


def kill_points(cmd: list[str], env: dict, roots: list[Path], log: Path) -> list[tuple[str, int]]:
    """Each link, unlink and rename a clean run makes on the archive or the target, as
    (syscall, which call of that syscall it is): where strace can kill the run."""
    subprocess.run(
        ["strace", "-qq", "-o", str(log), "-e", "trace=" + ",".join(CALLS), *cmd],
        env=env,
        check=True,
    )
    seen: dict[str, int] = {}
    points = []
    for line in log.read_text().splitlines():
        if not (m := re.match(r"(\w+)\((.*)\)\s+= ", line)) or m[1] not in CALLS:
            continue
        seen[m[1]] = seen.get(m[1], 0) + 1
        if any(str(root) in m[2] for root in roots):
            points.append((m[1], seen[m[1]]))
    return points


@contextlib.contextmanager
def target_filesystem(kind: str, tmp_path: Path):
    if kind == "exfat":
        with exfat(tmp_path / "stick") as stick:
            yield stick
        return
    if other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    other = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        yield other
    finally:
        shutil.rmtree(other)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,expected",
    # 2 groups (3 files): a refused link each, then links of the temporaries (or, on
    # exFAT, a refused link and renames over empty files), temporaries removed (on exFAT
    # already renamed: the unlink finds nothing), sources removed
    [("tmpfs", 11), ("exfat", 13)],
)
def test_a_kill_at_every_link_and_unlink_of_a_move_across_filesystems(tmp_path, kind, expected):
    """strace kills the run (SIGKILL) at the n-th link, unlink or rename, for every n of a
    small cross-filesystem run; each kill must leave a move in flight, and recovery must
    leave each file exactly once, byte-identical, and no temporary."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (test_sorter crashes at every step instead)")
    template = tmp_path / "template"
    make_archive(template, 2)  # a photo with an .xmp sidecar, a photo alone
    before = census(template)
    with target_filesystem(kind, tmp_path) as other:

        def fresh(name: str) -> tuple[Path, Path, Path, list[str], dict]:
            src, dest, state = (
                tmp_path / name / "Pictures",
                other / name / "Flowers",
                tmp_path / name / "state",
            )
            shutil.copytree(template, src)
            stick = ROOT_ON_A_STICK if kind == "exfat" else ()
            cmd = [*classify_cmd(src, dest), "--no-cache", *stick]
            return src, dest, state, cmd, env_with(state)

        src, dest, state, cmd, env = fresh("clean")
        points = kill_points(cmd, env, [src, dest], tmp_path / "strace.log")
        assert len(points) == expected, points
        for i, (call, n) in enumerate(points):
            src, dest, state, cmd, env = fresh(f"kill{i}")
            inject = f"inject={call}:signal=KILL:when={n}"
            killed = subprocess.run(
                ["strace", "-qq", "-o", "/dev/null", "-e", f"trace={call}", "-e", inject, *cmd],
                env=env,
            )
            assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (call, n)
            assert in_flight(state) == 1, f"the kill at {call} #{n} interrupted no move"
            journal = Journal(state / "flowersort")
            assert journal.recover() == 1
            journal.close()
            assert census(src, dest) == before, f"after the kill at {call} #{n}"
            left = [p for p in [*src.rglob("*"), *dest.rglob("*")] if copies.TMP_PREFIX in p.name]
            assert left == [], f"after the kill at {call} #{n}"


def test_a_run_given_relative_folders_is_recovered_and_undone_from_anywhere(tmp_path):
    """`cd ~; flowersort classify Pictures --move-to Flowers`, killed (strace) as it removes
    its first source; the next run, from another folder as cron's, must finish that move
    (not leave the photo twice), and undo from there must put everything back."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    home, elsewhere, state = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "state"
    make_archive(home / "Pictures", 2)  # a photo with an .xmp sidecar, a photo alone
    elsewhere.mkdir()
    before = census(home / "Pictures")
    relative = [*classify_cmd(Path("Pictures"), Path("Flowers")), "--no-cache"]
    log, env = tmp_path / "strace.log", env_with(state)
    trace = ["strace", "-qq", "-o", str(log), "-e", "trace=unlink,unlinkat"]
    clean = tmp_path / "clean"
    shutil.copytree(home, clean)
    subprocess.run([*trace, *relative], cwd=clean, env=env_with(tmp_path / "s0"), check=True)
    calls = [line for line in log.read_text().splitlines() if line.startswith("unlink")]
    n = next(i for i, line in enumerate(calls, 1) if "Pictures/" in line)
    inject = f"inject=unlink,unlinkat:signal=KILL:when={n}"
    killed = subprocess.run([*trace, "-e", inject, *relative], cwd=home, env=env)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    assert in_flight(state) == 1
    absolute = classify_cmd(home / "Pictures", home / "Flowers")
    nightly = subprocess.run(absolute, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert nightly.returncode == 0, nightly.stderr
    assert census(home / "Pictures", home / "Flowers") == before  # no photo twice
    assert sorted(p.name for p in (home / "Flowers").iterdir()) == [
        "IMG_0000.jpg",
        "IMG_0000.xmp",
        "IMG_0001.jpg",
    ]
    undo = [sys.executable, "-m", "flowersort", "undo"]
    for which in ([], ["1"]):  # the nightly run, then the killed one its recovery finished
        done = subprocess.run(undo + which, cwd=elsewhere, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert census(home / "Pictures") == before and not (home / "Flowers").exists()
    assert list(elsewhere.iterdir()) == []


def test_an_undo_from_an_exfat_stick_killed_mid_photo_leaves_no_photo_0777(tmp_path, state_home):
    """Undo copies a photo off the stick (0700 there with umask=077: without it, 0777, a
    private photo is not moved there), links it home, removes it from the stick, then gave
    it back its mode: killed between, the next undo finished the move and the private photo
    kept the stick's mode."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    src = tmp_path / "Pictures"
    make_archive(src, 2)
    for path in src.rglob("*.*"):
        path.chmod(0o600)
    before = census(src)
    env = env_with(state_home)
    undo = [sys.executable, "-m", "flowersort", "undo"]
    with exfat(tmp_path / "stick", options="umask=077") as stick:
        subprocess.run(classify_cmd(src, stick / "Flowers"), env=env, check=True)
        assert any((stick / "Flowers").iterdir())
        log = tmp_path / "strace.log"
        trace = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=unlink,unlinkat"]
        assert subprocess.run([*trace, *undo], env=env, capture_output=True).returncode == 0
        # replay: the first unlink on the stick, after the photo was linked home
        subprocess.run(classify_cmd(src, stick / "Flowers"), env=env, check=True)
        lines = [x for x in log.read_text().splitlines() if "unlink" in x and "resumed" not in x]
        n = next(i for i, x in enumerate(lines, 1) if "stick/Flowers/" in x)
        inject = f"inject=unlink,unlinkat:signal=KILL:when={n}"
        killed = subprocess.run([*trace, "-e", inject, *undo], env=env, capture_output=True)
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
        again = subprocess.run(undo, env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
    assert census(src) == before
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in src.rglob("*.*")}
    assert set(modes.values()) == {"0o600"}, modes
