"""classify --tag end to end: keywords in sidecars instead of moves, --dry-run, --json,
undo, a second run, corrections through tags, a damaged sidecar, a kill mid-write."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from flowersort.photos import xmp, xmp_splice, xmp_write
from tests.conftest import census, nested_archive, run
from tests.test_xmp import DIGIKAM


@pytest.fixture
def archive(tmp_path):
    """Pictures/ with 6 flowers in 2024/garden and 6 others in 2023."""
    return nested_archive(tmp_path)


def tag(archive, model, *extra):
    args = ["classify", archive, "--tag", "Flowers", "--model", model, "--workers", 1]
    return run(*args, *extra)


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def photos(root) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*.jpg")}


def sidecars(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.xmp"))


def test_tag_writes_keywords_moves_nothing_and_a_second_run_adds_nothing(archive, trained_model):
    before = photos(archive)
    result = tag(archive, trained_model, "--json")
    assert result.exit_code == 0, result.output
    out = lines(result)
    tagged = [o for o in out if o["action"] == "tagged"]
    assert len(tagged) == 6 and all("/2024/garden/" in o["path"] for o in tagged)
    assert all(o["keyword"] == "Flowers" and o["detail"] == o["path"] + ".xmp" for o in tagged)
    assert {o["action"] for o in out} == {"tagged", "kept"}
    assert "keyword" not in [o for o in out if o["action"] == "kept"][0]
    assert photos(archive) == before  # no photo moved, renamed or changed
    assert sidecars(archive) == sorted(
        p.relative_to(archive).as_posix() + ".xmp" for p in archive.rglob("fl_*.jpg")
    )
    side = next(archive.rglob("*.xmp"))
    assert xmp.read_keywords(side).subject == ("Flowers",)
    written = {p: p.read_bytes() for p in archive.rglob("*.xmp")}

    again = tag(archive, trained_model, "--json")
    assert {o["action"] for o in lines(again) if o["flower"]} == {"already-tagged"}
    assert {p: p.read_bytes() for p in archive.rglob("*.xmp")} == written


def test_dry_run_says_would_tag_and_writes_nothing(archive, trained_model, state_home):
    before = census(archive)
    result = tag(archive, trained_model, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert [o["action"] for o in lines(result)].count("would-tag") == 6
    assert census(archive) == before and sidecars(archive) == []
    assert not (state_home / "flowersort" / "journal.sqlite").exists()


def test_text_lines_and_the_summary_name_what_was_tagged(archive, trained_model):
    result = tag(archive, trained_model)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert re.fullmatch(
        r"tagged: .*fl_\d+\.jpg \(\d\.\d{3}\) \+ Flowers in fl_\d+\.jpg\.xmp", first
    )
    assert "12 photos: 6 tagged, 6 kept, 0 skipped, 0 failed" in result.stderr


def test_undo_takes_out_only_our_keyword(archive, trained_model):
    garden = archive / "2024" / "garden"
    mine = garden / "fl_000.jpg.xmp"
    mine.write_bytes(DIGIKAM)  # the user's digiKam sidecar, with their tags
    assert tag(archive, trained_model).exit_code == 0
    by_hand, _ = xmp_splice.add_keyword(mine.read_bytes(), "Bees")  # added in digiKam since
    mine.write_bytes(by_hand)
    listed = run("undo", "--list", "--json")
    assert json.loads(listed.stdout.splitlines()[-1])["kind"] == "tag"
    result = run("undo", "--json")
    assert result.exit_code == 0, result.output
    assert {o["action"] for o in lines(result)} == {"untagged"}
    assert sidecars(archive) == ["2024/garden/fl_000.jpg.xmp"]  # the ones it made: gone
    kw = xmp.read_keywords(mine)
    assert not kw.has("Flowers") and kw.subject == ("Rome", "Anna", "Bees")
    assert run("undo").exit_code == 2  # nothing left to undo


def test_a_removed_keyword_is_a_veto_and_a_hand_tag_a_flower_example(
    archive, trained_model, examples, tmp_path
):
    assert tag(archive, trained_model).exit_code == 0
    garden = archive / "2024" / "garden"
    side = garden / "fl_001.jpg.xmp"
    side.write_bytes(xmp_splice.remove_keyword(side.read_bytes(), "Flowers")[0])  # "not a flower"
    other = next((archive / "2023").glob("*.jpg"))
    other.with_name(other.name + ".xmp").write_bytes(
        xmp_splice.add_keyword(xmp_splice.new_sidecar(), "Flowers")[0]
    )  # "this one is"
    result = tag(archive, trained_model, "--json")
    out = {os.path.basename(o["path"]): o for o in lines(result)}
    assert out["fl_001.jpg"]["action"] == "vetoed"
    assert out["fl_001.jpg"]["detail"] == "its keyword removed by you in a photo manager"
    assert not xmp.read_keywords(side).has("Flowers")  # never tagged again
    listed = run("corrections", "list", "--json")
    kinds = {os.path.basename(c["path"]): (c["label"], c["kind"]) for c in lines(listed)}
    assert kinds == {
        "fl_001.jpg": ("not-flower", "tag-removed"),
        other.name: ("flower", "tagged-by-hand"),
    }
    train = run(
        "train", *examples, "--model", tmp_path / "m.npz", "--epochs", 2, "--members", 1,
        "--image-size", 48, "--grid", 4, "--crops", 1, "--json", "--workers", 1,
        "--with-corrections",
    )  # fmt: skip
    assert train.exit_code == 0, train.output
    assert json.loads(train.stdout.splitlines()[-1])["corrections"] == {
        "flowers": 1,
        "noflowers": 1,
    }


def test_the_review_band_gets_its_own_keyword(archive, trained_model):
    result = tag(archive, trained_model, "--threshold", 0.5, "--review-band", 1, "--json")
    assert result.exit_code == 0, result.output
    assert {o["keyword"] for o in lines(result)} == {"Flowers?"}
    custom = tag(archive, trained_model, "--threshold", 0.5, "--review-band", 1)
    assert custom.exit_code == 0
    named = tag(
        archive, trained_model, "--threshold", 0.5, "--review-band", 1, "--review-tag", "Maybe"
    )
    assert named.exit_code == 0 and "+ Maybe in" in named.stdout


def test_a_damaged_sidecar_is_one_line_exit_1_and_left_untouched(archive, trained_model):
    side = archive / "2024" / "garden" / "fl_002.jpg.xmp"
    side.write_bytes(b"<x:xmpmeta><broken")
    result = tag(archive, trained_model)
    assert result.exit_code == 1
    [line] = [x for x in result.stderr.splitlines() if "fl_002" in x]
    assert (
        line.startswith("failed: ") and "not well-formed XMP" in line and "left untouched" in line
    )
    assert "Traceback" not in result.output
    assert side.read_bytes() == b"<x:xmpmeta><broken"


@pytest.mark.parametrize(
    "args",
    [
        ["--move-to", "F"],
        ["--review-to", "R"],
        ["--keep-structure"],
    ],
)
def test_tag_with_an_option_of_moves_is_a_usage_error(archive, trained_model, args):
    result = tag(archive, trained_model, *args)
    assert result.exit_code == 2, result.output
    assert "--tag" in result.output or "need --move-to" in result.output


def test_review_tag_needs_tag(archive, trained_model):
    result = run("classify", archive, "--review-tag", "X", "--model", trained_model)
    assert result.exit_code == 2 and "--review-tag needs --tag" in result.output


@pytest.mark.parametrize("call", ["renameat", "linkat"])
def test_a_run_killed_as_it_writes_a_sidecar_is_finished_or_forgotten_by_the_next(
    archive, trained_model, state_home, call
):
    """SIGKILL (strace) as the third sidecar takes its name: that sidecar is as before,
    the journal holds the write in flight, and the next run removes the temporary, tags
    the photo and leaves every sidecar whole."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    garden = archive / "2024" / "garden"
    if call == "renameat":  # sidecars that exist: merged, then renamed over
        for p in garden.glob("*.jpg"):
            p.with_name(p.name + ".xmp").write_bytes(DIGIKAM)
    cmd = [sys.executable, "-m", "flowersort", "classify", str(archive), "--tag", "Flowers"]
    cmd += ["--model", str(trained_model), "--workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    inject = f"inject={call}:signal=KILL:when=3"
    killed = subprocess.run(
        ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={call}", "-e", inject, *cmd],
        env=env,
        capture_output=True,
    )
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stderr
    left = [p for p in garden.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)]
    assert len(left) == 1  # the kill interrupted a write
    import sqlite3

    db = sqlite3.connect(state_home / "flowersort" / "journal.sqlite")
    assert db.execute("SELECT count(*) FROM tags WHERE state = 'started'").fetchone() == (1,)
    db.close()
    after = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert "recovered an interrupted tag" in after.stderr
    assert [p for p in garden.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)] == []
    for p in garden.glob("*.jpg"):
        kw = xmp.read_keywords(p.with_name(p.name + ".xmp"))
        assert kw.subject.count("Flowers") == 1
    for which in ([], ["1"]):  # the run after the kill, then the one killed
        undo = subprocess.run([*cmd[:3], "undo", *which], env=env, capture_output=True, text=True)
        assert undo.returncode == 0, undo.stderr
    xmps = list(garden.glob("*.xmp"))
    assert len(xmps) == (6 if call == "renameat" else 0)  # the sidecars it made: gone
    assert all(p.read_bytes() == DIGIKAM for p in xmps)


def test_the_report_and_the_log_name_what_was_tagged(archive, trained_model, tmp_path):
    page, log = tmp_path / "r.html", tmp_path / "run.log"
    result = tag(archive, trained_model, "--report", page, "--log-file", log, "--quiet")
    assert result.exit_code == 0, result.output
    logged = [x for x in log.read_text().splitlines() if "tagged: " in x]
    assert len(logged) == 6 and all(" + Flowers in fl_" in x for x in logged)
    html = page.read_text()
    assert html.count('"tagged"') == 6 and html.count("Flowers in ") == 6


def test_a_borderline_photo_you_tagged_gets_no_review_keyword(archive, trained_model):
    mine = archive / "2024" / "garden" / "fl_003.jpg.xmp"
    mine.write_bytes(
        xmp_splice.add_keyword(xmp_splice.new_sidecar(), "Flowers")[0]
    )  # tagged by you
    result = tag(archive, trained_model, "--threshold", 0.5, "--review-band", 1, "--json")
    assert result.exit_code == 0, result.output
    out = {os.path.basename(o["path"]): o for o in lines(result)}
    assert out["fl_003.jpg"]["action"] == "kept"
    assert xmp.read_keywords(mine).hierarchical == ("Flowers",)
    assert {o["action"] for n, o in out.items() if n != "fl_003.jpg"} == {"tagged"}


TRACED = ("write", "fsync", "renameat", "linkat")


def tag_points(cmd: list[str], env: dict, folder, log) -> list[tuple[str, int, str]]:
    """(syscall, which call of it, the line) for each write, fsync, rename and link a clean
    tag run makes in `folder`: where strace fails or kills the next runs."""
    trace = ["strace", "-f", "-qq", "-y", "-o", str(log), "-e", "trace=" + ",".join(TRACED)]
    subprocess.run([*trace, *cmd], env=env, check=True, capture_output=True)
    seen: dict[str, int] = {}
    found = []
    for line in log.read_text().splitlines():
        line = re.sub(r"^\d+\s+", "", line)
        if not (m := re.match(r"(\w+)\((.*)\)\s+= ", line)) or m[1] not in TRACED:
            continue
        seen[m[1]] = seen.get(m[1], 0) + 1
        if str(folder) in m[2]:
            found.append((m[1], seen[m[1]], line))
    return found


def two_flowers(tmp_path, name: str, existing: bool):
    """Pictures/ with two flowers (with digiKam sidecars, if `existing`) and one other."""
    from tests.conftest import make_folders

    flowers, noflowers = make_folders(tmp_path / name / "gen", 2, seed=7)
    root = tmp_path / name / "Pictures"
    shutil.copytree(flowers, root)
    shutil.copy(noflowers / "no_000.jpg", root)
    shutil.rmtree(tmp_path / name / "gen")
    if existing:
        for p in root.glob("fl_*.jpg"):
            p.with_name(p.name + ".xmp").write_bytes(DIGIKAM)
    return root


def sidecar_states(root, existing: bool) -> list[str]:
    """Each flower's sidecar: "before" (as it was, or none) or "complete" (every keyword it
    had, and Flowers once); anything else fails the test."""
    states = []
    for p in sorted(root.glob("fl_*.jpg")):
        side = p.with_name(p.name + ".xmp")
        if not side.exists() or (existing and side.read_bytes() == DIGIKAM):
            assert side.exists() == existing
            states.append("before")
            continue
        kw = xmp.read_keywords(side)
        old = xmp.parse_keywords(DIGIKAM if existing else xmp_splice.new_sidecar(), side)
        assert kw.subject == (*old.subject, "Flowers"), side.read_bytes()
        assert kw.hierarchical == (*old.hierarchical, "Flowers")
        states.append("complete")
    return states


@pytest.mark.slow
@pytest.mark.parametrize("existing", [True, False], ids=["merge", "new"])
@pytest.mark.parametrize("how", ["fault", "kill"])
def test_a_fault_or_kill_at_every_write_fsync_and_rename_of_a_tag_run(
    tmp_path, trained_model, monkeypatch, existing, how
):
    """strace fails (ENOSPC, EIO) or kills (SIGKILL) the run at each write, fsync, rename
    and link it makes in the archive: every sidecar is as before or complete, never half
    written; a fault is one failed photo (exit 1) and cleans up after itself; a kill leaves
    the write in flight in the journal, and the next run finishes it; two undos then give
    back every sidecar as it was."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def fresh(name: str):
        root = two_flowers(tmp_path, name, existing)
        state = tmp_path / name / "state"
        monkeypatch.setenv("XDG_STATE_HOME", str(state))
        run_env = {**env, "XDG_STATE_HOME": str(state), "XDG_CACHE_HOME": str(state)}
        cmd = [sys.executable, "-m", "flowersort", "classify", str(root), "--tag", "Flowers"]
        cmd += ["--model", str(trained_model), "--workers", "1", "--quiet", "--no-cache"]
        return root, cmd, run_env

    root, cmd, run_env = fresh("clean")
    found = tag_points(cmd, run_env, root, tmp_path / "strace.log")
    # each sidecar: its temporary's write and fsync, its rename (or link), the folder's fsync
    assert [c for c, _, _ in found].count("fsync") == 4, found
    assert len(found) == 8, found
    for i, (call, n, line) in enumerate(found):
        root, cmd, run_env = fresh(f"{how}{i}")
        if how == "fault":
            inject = f"inject={call}:error={'ENOSPC' if call == 'write' else 'EIO'}:when={n}"
        else:
            inject = f"inject={call}:signal=KILL:when={n}"
        trace = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={call}", "-e", inject]
        hit = subprocess.run([*trace, *cmd], env=run_env, capture_output=True, text=True)
        sidecar_states(root, existing)  # before or complete, each one
        temps = [p.name for p in root.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)]
        if how == "fault":
            assert hit.returncode == 1, (line, hit.stderr)
            assert hit.stderr.count("failed: ") == 1, (line, hit.stderr)
            assert temps == [], line
        else:
            assert hit.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), line
            # before the name is taken, the temporary it interrupted is left (the journal
            # knows it); after (the folder's fsync), the sidecar is complete
            named = call == "fsync" and xmp_write.TMP_PREFIX not in line
            assert len(temps) == (0 if named else 1), line
        after = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
        assert after.returncode == 0, (line, after.stderr)
        assert sidecar_states(root, existing) == ["complete", "complete"], line
        assert [p for p in root.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)] == [], line
        listed = subprocess.run(
            [*cmd[:3], "undo", "--list", "--json"], env=run_env, text=True, capture_output=True
        )
        for info in map(
            json.loads, listed.stdout.splitlines()[::-1]
        ):  # the run after, then the one hit
            assert info["kind"] == "tag" and info["state"] in ("done", "interrupted"), line
            undone = subprocess.run([*cmd[:3], "undo", str(info["run"])], env=run_env)
            assert undone.returncode == 0, line
        assert sidecar_states(root, existing) == ["before", "before"], line


def test_a_dry_run_after_move_runs_reads_a_journal_without_tags(archive, trained_model, tmp_path):
    """The journal of earlier move runs has no table tags yet, and a dry run only reads."""
    moved = run("classify", archive / "2023", "--move-to", tmp_path / "F", "--model", trained_model)
    assert moved.exit_code == 0, moved.output
    result = tag(archive, trained_model, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would tag: " in result.stdout


@pytest.mark.parametrize(
    "option,keyword",
    [
        ("--tag", "Fl\udcffwers"),  # a Latin-1 byte in the argument: no character of XMP's
        ("--tag", "Fl\x01wers"),  # a control character, which XML cannot hold
        ("--review-tag", "Maybe\ufffe"),
    ],
)
def test_a_keyword_a_sidecar_cannot_hold_is_one_line_exit_2_before_anything(
    archive, trained_model, option, keyword
):
    args = ["--tag", keyword] if option == "--tag" else ["--tag", "Flowers", option, keyword]
    result = run("classify", archive, *args, "--model", trained_model, "--workers", 1)
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()
    assert "not a keyword" in line and "Traceback" not in result.output
    assert sidecars(archive) == []
