"""Running unattended: the log file, its folder, and the README's cron line as written."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from flowersort.cli.app import cli
from tests.conftest import census, make_folders, nested_archive, run

ROOT = Path(__file__).resolve().parents[1]
MOVE_LINE = re.compile(r"INFO moved: (.+) -> (.+) \((\d\.\d{3})\)( \+ .+)?$")


@pytest.fixture
def archive(tmp_path):
    """6 flowers (two with an .xmp, one with a RAW twin) and 6 others in nested folders."""
    root = nested_archive(tmp_path)
    (root / "2024" / "garden" / "fl_000.xmp").write_text("<x:xmpmeta/>")
    (root / "2024" / "garden" / "fl_001.xmp").write_text("<x:xmpmeta/>")
    (root / "2024" / "garden" / "fl_001.CR2").write_bytes(b"raw")
    return root


def log_moves(log: Path) -> list[tuple[str, str, str]]:
    """(source, target, sidecars) of every 'moved:' line of a log file."""
    moves = []
    for line in log.read_text().splitlines():
        if m := MOVE_LINE.search(line):
            moves.append((m.group(1), m.group(2), (m.group(4) or "").removeprefix(" + ")))
    return moves


def test_quiet_log_file_names_every_move_with_its_sidecars(archive, trained_model, tmp_path):
    dest, log = tmp_path / "Flowers", tmp_path / "flowersort.log"
    # an older file takes the first name: the log must tell the name the photo really got
    dest.mkdir()
    (dest / "fl_001.jpg").write_bytes(b"someone else's photo")
    args = ["classify", archive, "--move-to", dest, "--model", trained_model]
    result = run(*args, "--quiet", "--log-file", log)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr.startswith(
        f"the target {dest} already holds 1 photo that flowersort did not put there: "
    )  # said once, by the first run into it
    assert len(result.stderr.splitlines()) == 1
    moves = log_moves(log)
    arrived = sorted(p for p in dest.iterdir() if p.suffix == ".jpg" and p.name != "fl_001.jpg")
    assert len(arrived) >= 5
    assert sorted(Path(target) for _, target, _ in moves) == arrived
    for source, _, _ in moves:
        assert not Path(source).exists() and Path(source).parent == archive / "2024" / "garden"
    sidecars = {Path(source).name: (Path(target).name, extra) for source, target, extra in moves}
    assert sidecars["fl_000.jpg"] == ("fl_000.jpg", ".xmp")
    assert sidecars["fl_001.jpg"] == ("fl_001 (1).jpg", ".CR2, .xmp")
    assert (dest / "fl_001 (1).CR2").read_bytes() == b"raw"
    text = log.read_text()
    assert "kept:" not in text  # one line per photo per night is not a log
    kept = 12 - len(moves)
    summary = f"INFO 12 photos: {len(moves)} moved, 0 copied, {kept} kept, 0 skipped, 0 failed"
    summary += f"; model {trained_model}"
    assert text.splitlines()[-1].endswith(summary)


def test_undo_logs_every_photo_it_puts_back(archive, trained_model, tmp_path):
    dest, log = tmp_path / "Flowers", tmp_path / "undo.log"
    result = run("classify", archive, "--move-to", dest, "--model", trained_model)
    assert result.exit_code == 0, result.output
    moved = [line for line in result.stdout.splitlines() if line.startswith("moved: ")]
    result = run("undo", "--quiet", "--log-file", log)
    assert result.exit_code == 0, result.output
    restored = [line.split(" INFO ", 1)[1] for line in log.read_text().splitlines()]
    restored = [line for line in restored if line.startswith("restored: ")]
    assert len(restored) == len(moved) >= 5
    expected = {
        re.sub(r"^moved: (.+) -> (.+) \(\d\.\d{3}\)(.*)$", r"restored: \2 -> \1\3", line)
        for line in moved
    }
    assert set(restored) == expected
    assert any(line.endswith("fl_001.jpg + .CR2, .xmp") for line in restored)


def test_moves_are_printed_once_and_kept_photos_logged_only_with_verbose(
    archive, trained_model, tmp_path
):
    dest, log = tmp_path / "Flowers", tmp_path / "v.log"
    args = ["classify", archive, "--move-to", dest, "--model", trained_model, "--log-file", log]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "moved: " in result.stdout and "moved: " not in result.stderr
    assert "kept:" not in log.read_text()
    shutil.rmtree(dest)
    for p in archive.rglob("*.jpg"):
        p.touch()
    result = run(*args, "--verbose")
    assert result.exit_code == 0, result.output
    assert log.read_text().count(" DEBUG kept: ") == 6


def test_log_file_folder_is_created(archive, trained_model, tmp_path):
    log = tmp_path / "home" / ".cache" / "flowersort.log"
    result = run("classify", archive, "--model", trained_model, "-q", "--log-file", log)
    assert result.exit_code == 0, result.output
    assert "12 photos: 0 moved" in log.read_text()


@pytest.mark.parametrize(
    "where, reason", [("a-file/flowersort.log", "Not a directory"), (".", "Is a directory")]
)
def test_unusable_log_file_is_one_line_and_exit_2(archive, trained_model, tmp_path, where, reason):
    (tmp_path / "a-file").write_text("")
    log = tmp_path / where
    result = run("classify", archive, "--model", trained_model, "--log-file", log)
    assert result.exit_code == 2
    assert result.stderr == f"Error: cannot write the log file {log}: {reason}\n"
    assert result.stdout == ""


# ---------------------------------------------------------------- the README's cron line


def readme_cron_line() -> str:
    lines = [
        line.strip()
        for line in (ROOT / "README.md").read_text().splitlines()
        if re.match(r"\s+0 3 \* \* \* ", line)
    ]
    assert lines, "no cron line in the README"
    return lines[0]  # the first: "Run it nightly" (the learning loop's comes later)


def cron_can_run() -> str | None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setsid"):
        return "needs root, unshare and setsid to put an install at /opt/flowersort"
    if any(p.startswith("/opt/") for p in (os.path.realpath(sys.executable), sys.base_prefix)):
        return "the test's Python lives under /opt, which the test hides"
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "t", "/opt"], check=False)
    return None if probe.returncode == 0 else "cannot mount in a private mount namespace"


def with_opt_install(then: str) -> subprocess.CompletedProcess:
    """Run shell code `then` in a private mount namespace whose /opt/flowersort/bin/flowersort
    is this checkout's installed command (nothing is written to the real /opt)."""
    exe = Path(sys.executable).parent / "flowersort"
    if exe.exists():
        install = f"ln -s {shlex.quote(str(exe))} /opt/flowersort/bin/flowersort"
    else:  # not installed: a wrapper running this checkout
        wrapper = f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m flowersort "$@"\n'
        install = (
            f"printf %s {shlex.quote(wrapper)} > /opt/flowersort/bin/flowersort && "
            "chmod +x /opt/flowersort/bin/flowersort"
        )
    script = f"mount -t tmpfs tmpfs /opt && mkdir -p /opt/flowersort/bin && {install} && {then}"
    return subprocess.run(
        ["unshare", "-m", "/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_cron_line(home: Path, line: str) -> subprocess.CompletedProcess:
    """Run the command part of a crontab line as cron does: /bin/sh -c, an empty
    environment but HOME, LOGNAME, SHELL and PATH=/usr/bin:/bin, no terminal, no stdin."""
    command = line.split(None, 5)[5]
    cron_env = f"HOME={shlex.quote(str(home))} LOGNAME=root SHELL=/bin/sh PATH=/usr/bin:/bin"
    return with_opt_install(f"exec setsid env -i {cron_env} /bin/sh -c {shlex.quote(command)}")


def usage_block(after: str) -> str:
    """The indented block that follows the docs/usage.md line ending with `after`."""
    lines = (ROOT / "docs" / "usage.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(after)) + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_usage_systemd_units_verify(tmp_path):
    why_not = cron_can_run()
    if why_not or not shutil.which("systemd-analyze"):
        pytest.skip(why_not or "needs systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    service = usage_block("flowersort.service`:")
    timer = usage_block("flowersort.timer`:")
    assert "ExecStart=/opt/flowersort/bin/flowersort classify %h/Pictures" in service
    (units / "flowersort.service").write_text(service)
    (units / "flowersort.timer").write_text(timer)
    proc = with_opt_install(
        f"cd {units} && systemd-analyze verify ./flowersort.timer ./flowersort.service"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def sure_of_the_shipped_model(folder: Path) -> list[str]:
    """The names of the photos in folder that the shipped model would move."""
    from flowersort.model.file import default_model_path, load_model
    from flowersort.model.metrics import effective_band
    from flowersort.scoring.pipeline import score_photos

    model = load_model(default_model_path())
    line = model.threshold + effective_band(model.threshold, model.summary["review_band"])
    photos = sorted(folder.rglob("*.[jp][pn]g"))
    return sorted(s.path.name for s in score_photos(model, photos, 1) if s.score >= line)


def test_readme_cron_line_as_written(tmp_path):
    why_not = cron_can_run()
    if why_not:
        pytest.skip(why_not)
    line = readme_cron_line()
    home = tmp_path / "home"  # no .cache, no .local: a fresh account
    pictures = home / "Pictures"
    for i, photo in enumerate(sorted((ROOT / "sample_photos").rglob("*.[jp][pn]g"))):
        album = pictures / ("2020/07 Отпуск в Крыму" if i % 2 else "2021/08 京都旅行")
        album.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, album / photo.name)
        (album / photo.with_suffix(".xmp").name).write_text("<x:xmpmeta/>")
    proc = run_cron_line(home, line)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # cron mails any output
    flowers = home / "Pictures" / "Flowers"
    arrived = sorted(flowers.glob("*.jpg"))
    # the photos the shipped model is sure of (at or above its threshold and review band),
    # whatever their number: the precision-first model moves few of the samples, or none
    assert [p.name for p in arrived] == sure_of_the_shipped_model(ROOT / "sample_photos")
    log = home / ".cache" / "flowersort.log"
    moves = log_moves(log)
    assert sorted(Path(target) for _, target, _ in moves) == arrived
    assert all(extra == ".xmp" for _, _, extra in moves)
    assert all((flowers / Path(t).with_suffix(".xmp").name).exists() for _, t, _ in moves)
    assert len(log.read_text().splitlines()) == len(moves) + 1  # the moves and the summary

    # the next night: nothing new, and the log grows by one line
    proc = run_cron_line(home, line)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == len(moves) + 2
    assert re.search(
        r"INFO \d+ photos: 0 moved, 0 copied, (\d+ borderline, )?\d+ kept, 0 skipped, 0 failed; "
        r"model \S+default.npz$",
        lines[-1],
    )


def test_readme_learning_loop_cron_lines_as_written(tmp_path):
    """The weekly retraining line and the nightly line that uses its model, as written, in
    cron's environment (PATH=/usr/bin:/bin): each prints nothing, also the second week,
    when the model file is there already."""
    why_not = cron_can_run()
    if why_not:
        pytest.skip(why_not)
    lines = [
        line.strip()
        for line in (ROOT / "README.md").read_text().splitlines()
        if re.match(r"\s+0 [35] \* \* [*0] .*--model", line)
    ]
    nightly, weekly = lines  # the learning loop's two lines
    home = tmp_path / "home"
    for kind in ("flowers", "noflowers"):
        shutil.copytree(ROOT / "sample_photos" / kind, home / "flowersort" / kind)
    shutil.copytree(ROOT / "sample_photos", home / "Pictures")
    for week in (1, 2):
        proc = run_cron_line(home, weekly)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), week
        assert (home / "flowersort" / "mine.npz").is_file()
        proc = run_cron_line(home, nightly)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), week


# ---------------------------------------------------------------- nightly copies


def test_nightly_copy_to_leaves_what_is_already_there(archive, trained_model, tmp_path):
    dest = tmp_path / "Flowers"
    args = ["classify", archive, "--copy-to", dest, "--model", trained_model]
    first = run(*args, "--quiet")
    assert first.exit_code == 0 and first.stdout == "" and first.stderr == "", first.output
    copies = sorted(dest.iterdir())
    assert len([p for p in copies if p.suffix == ".jpg"]) >= 5
    for _ in range(2):  # the next nights: nothing new, nothing said under --quiet
        again = run(*args, "--quiet")
        assert again.exit_code == 0 and again.stdout == "" and again.stderr == "", again.output
    assert sorted(dest.iterdir()) == copies
    n = len([p for p in copies if p.suffix == ".jpg"])
    said = f"12 photos: 0 moved, 0 copied, {n} already there, {12 - n} kept, 0 skipped, 0 failed"
    said += f"; model {trained_model}"
    assert run(*args).stderr.splitlines()[-1] == said
    assert run(*args, "--dry-run").stderr.splitlines()[-1] == said
    lines = [json.loads(line) for line in run(*args, "--json").stdout.splitlines()]
    there = [line for line in lines if line["action"] == "already-there"]
    assert len(there) == n and all(Path(line["detail"]).parent == dest for line in there)
    # a copy changed at the target since is not "there": the photo is copied anew
    changed = Path(there[0]["detail"])
    changed.write_bytes(b"edited")
    result = run(*args, "--json")
    actions = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    assert actions[there[0]["path"]]["action"] == "copied"
    assert changed.read_bytes() == b"edited"


def test_copy_twin_under_a_numbered_name_is_recognised_without_the_journal(
    archive, trained_model, tmp_path
):
    """A copy made by another account (another journal) is recognised by its bytes."""
    dest = tmp_path / "Flowers"
    dest.mkdir()
    photo = archive / "2024" / "garden" / "fl_002.jpg"
    (dest / "fl_002.jpg").write_bytes(b"an unrelated photo")
    shutil.copy(photo, dest / "fl_002 (1).jpg")
    result = run("classify", photo, "--copy-to", dest, "--model", trained_model, "--json")
    assert json.loads(result.stdout)["action"] == "already-there"
    assert json.loads(result.stdout)["detail"] == str(dest / "fl_002 (1).jpg")
    assert sorted(p.name for p in dest.iterdir()) == ["fl_002 (1).jpg", "fl_002.jpg"]


def test_on_conflict_skip_is_silent_under_quiet(archive, trained_model, tmp_path):
    dest = tmp_path / "Flowers"
    args = ["classify", archive, "--move-to", dest, "--model", trained_model]
    assert run(*args).exit_code == 0
    for p in dest.glob("*.jpg"):  # the same photos come back from a phone sync
        shutil.copy(p, archive / p.name)
    result = run(*args, "--on-conflict", "skip", "--quiet")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_a_moved_photo_that_comes_back_is_not_moved_again(archive, trained_model, tmp_path):
    dest = tmp_path / "Flowers"
    args = ["classify", archive, "--move-to", dest, "--model", trained_model, "--json"]
    first = [json.loads(line) for line in run(*args).stdout.splitlines()]
    moved = [line for line in first if line["action"] == "moved"]
    back = Path(moved[0]["path"])
    shutil.copy(moved[0]["detail"], back)  # re-synced from a phone, byte for byte
    second = [json.loads(line) for line in run(*args).stdout.splitlines()]
    assert [(line["action"], line["detail"]) for line in second if line["path"] == str(back)] == [
        ("already-there", moved[0]["detail"])
    ]
    assert back.exists() and len(list(dest.glob("*.jpg"))) == len(moved)


# ---------------------------------------------------------------- --exclude

EXCLUDE_TREE = {
    "2020/01/a.jpg",
    "2020/02/b.jpg",
    "2021/c.jpg",
    "Screenshots/d.jpg",
    "2021/Screenshots/e.jpg",
    "2021/x/Screenshots/f.jpg",
}


@pytest.mark.parametrize(
    "pattern, gone",
    [
        ("2020/01", {"2020/01/a.jpg"}),
        ("2020/01/", {"2020/01/a.jpg"}),
        ("2020/*", {"2020/01/a.jpg", "2020/02/b.jpg"}),
        ("2020", {"2020/01/a.jpg", "2020/02/b.jpg"}),
        (
            "Screenshots",
            {"Screenshots/d.jpg", "2021/Screenshots/e.jpg", "2021/x/Screenshots/f.jpg"},
        ),
        ("*/Screenshots", {"2021/Screenshots/e.jpg", "2021/x/Screenshots/f.jpg"}),
        ("c.jpg", {"2021/c.jpg"}),
        ("ABS/2021", {"2021/c.jpg", "2021/Screenshots/e.jpg", "2021/x/Screenshots/f.jpg"}),
        ("Pictures/2020", set()),  # relative to SRC, not to the working folder
    ],
)
@pytest.mark.parametrize("spelling", ["Pictures", "./Pictures/", "ABS"])
def test_exclude_matches_paths_relative_to_src(tmp_path, monkeypatch, pattern, gone, spelling):
    from flowersort.photos.archive import walk

    for name in EXCLUDE_TREE:
        (tmp_path / "Pictures" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "Pictures" / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    src = spelling.replace("ABS", str(tmp_path / "Pictures"))
    pattern = pattern.replace("ABS", str(tmp_path / "Pictures"))
    seen = {os.path.relpath(p, tmp_path / "Pictures") for p in walk(src, exclude=[pattern])}
    assert seen == EXCLUDE_TREE - gone


def test_classify_exclude_a_dated_folder(tmp_path, monkeypatch, trained_model):
    import numpy as np

    from tests.conftest import make_photo, write_photo

    rng = np.random.default_rng(1)
    for name in EXCLUDE_TREE:
        write_photo(tmp_path / "Pictures" / name, make_photo(rng, True, 32))
    monkeypatch.chdir(tmp_path / "Pictures")
    args = ["classify", ".", "--exclude", "2020/*", "--exclude", "*/Screenshots", "--json"]
    result = run(*args, "--model", trained_model)
    assert result.exit_code == 0, result.output
    seen = {json.loads(line)["path"] for line in result.stdout.splitlines()}
    assert seen == {"./2021/c.jpg", "./Screenshots/d.jpg"}


# ---------------------------------------------------------------- dry run


def test_dry_run_shows_the_final_names_and_sidecars_the_real_run_gives(tmp_path):
    import numpy as np

    from tests.conftest import make_photo, write_photo

    rng = np.random.default_rng(3)
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    write_photo(src / "2020" / "DSC_0042.jpg", make_photo(rng, True))
    (src / "2020" / "DSC_0042.xmp").write_text("<x/>")
    (src / "2020" / "DSC_0042.CR2").write_bytes(b"raw")
    write_photo(src / "2021" / "DSC_0042.jpg", make_photo(rng, True))  # the same name again
    write_photo(src / "2021" / "IMG_7.jpg", make_photo(rng, True))
    dest.mkdir()
    (dest / "DSC_0042.jpg").write_bytes(b"an older photo")
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1]
    dry = run(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = [json.loads(line) for line in run(*args, "--dry-run", "--json").stdout.splitlines()]
    first, score = src / "2020" / "DSC_0042.jpg", planned[0]["score"]
    assert dry.stdout.splitlines()[0] == (
        f"would move: {first} -> {dest / 'DSC_0042 (1).jpg'} ({score:.3f}) + .CR2, .xmp"
    )
    done = [json.loads(line) for line in run(*args, "--json").stdout.splitlines()]
    assert [(p["action"], p["detail"], p["sidecars"]) for p in planned] == [
        (
            "would-move",
            str(dest / "DSC_0042 (1).jpg"),
            [str(dest / "DSC_0042 (1).CR2"), str(dest / "DSC_0042 (1).xmp")],
        ),
        ("would-move", str(dest / "DSC_0042 (2).jpg"), []),
        ("would-move", str(dest / "IMG_7.jpg"), []),
    ]
    assert [(d["detail"], d["sidecars"]) for d in done] == [
        (p["detail"], p["sidecars"]) for p in planned
    ]


# ---------------------------------------------------------------- undo history


@pytest.fixture
def two_albums(tmp_path):
    import numpy as np

    from tests.conftest import make_photo, write_photo

    rng = np.random.default_rng(9)
    src = tmp_path / "Pictures"
    for album in ("a", "b"):
        for i in range(2):
            write_photo(src / album / f"{album}{i}.jpg", make_photo(rng, True, 32))
    (src / "a" / "a0.xmp").write_text("<x/>")
    return src


def move(src, dest, *extra):
    result = run("classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, *extra)
    assert result.exit_code == 0, result.output
    return result


RUN_ROW = re.compile(
    r"^ +(\d+)  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  (move|copy) +(\d+)  (\w+) +(.*)$"
)


def test_undo_list_shows_each_run_with_its_date_counts_and_state(two_albums, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    move(Path("Pictures/a"), Path("A"))  # relative here, absolute in the list
    result = run("classify", two_albums / "b", "--copy-to", tmp_path / "B", "--threshold", 0)
    assert result.exit_code == 0, result.output
    run("classify", two_albums / "b", "--move-to", tmp_path / "C", "--threshold", 1)  # none
    listing = run("undo", "--list")
    assert listing.exit_code == 0, listing.output
    header, *rows = listing.stdout.splitlines()
    assert header == "  run  started              kind  photos  state          from -> to"
    parsed = [RUN_ROW.match(row).groups() for row in rows]
    assert [(p[0], p[2], p[3], p[4], p[5]) for p in parsed] == [
        ("1", "move", "2", "done", f"{two_albums / 'a'} -> {tmp_path / 'A'}"),
        ("2", "copy", "2", "done", f"{two_albums / 'b'} -> {tmp_path / 'B'}"),
    ]
    assert run("undo").exit_code == 0
    rows = [json.loads(line) for line in run("undo", "--list", "--json").stdout.splitlines()]
    assert [(r["run"], r["kind"], r["photos"], r["state"]) for r in rows] == [
        (1, "move", 2, "done"),
        (2, "copy", 2, "undone"),
    ]
    assert set(rows[0]) == {"run", "kind", "started", "photos", "state", "src", "dest"}


def test_undo_twice_says_the_last_run_is_undone_and_undo_run_goes_further(two_albums, tmp_path):
    move(two_albums / "a", tmp_path / "A")
    move(two_albums / "b", tmp_path / "B")
    assert run("undo").exit_code == 0
    assert sorted(p.name for p in (two_albums / "b").iterdir()) == ["b0.jpg", "b1.jpg"]
    again = run("undo")
    assert again.exit_code == 2
    assert re.fullmatch(
        r"Error: nothing to undo: the last run \(2\), \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, 2 photos, "
        r"is already undone; 'flowersort undo --list' shows the runs, "
        r"'flowersort undo RUN' undoes one\n",
        again.stderr,
    )
    assert not (two_albums / "a" / "a0.jpg").exists()  # run 1 was not walked into
    result = run("undo", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (two_albums / "a").iterdir()) == ["a0.jpg", "a0.xmp", "a1.jpg"]
    assert run("undo", "1").exit_code == 2
    missing = run("undo", "7")
    assert missing.exit_code == 2
    assert missing.stderr == (
        "Error: no run 7 moved photos; 'flowersort undo --list' shows the runs, "
        "'flowersort undo RUN' undoes one\n"
    )


def test_undo_dry_run_says_what_would_go_back_and_touches_nothing(two_albums, tmp_path):
    dest = tmp_path / "A"
    move(two_albums / "a", dest)
    (two_albums / "a" / "a1.jpg").write_bytes(b"a new photo took the old place")
    before = census(two_albums, dest)
    listing = sorted(tmp_path.rglob("*"))
    result = run("undo", "--dry-run")
    assert result.exit_code == 1  # a1 could not go back
    assert sorted(tmp_path.rglob("*")) == listing and census(two_albums, dest) == before
    assert result.stdout == (
        f"would restore: {dest / 'a0.jpg'} -> {two_albums / 'a' / 'a0.jpg'} + .xmp\n"
    )
    assert f"failed: {two_albums / 'a' / 'a1.jpg'}: a file of that name has appeared since" in (
        result.stderr
    )
    assert result.stderr.splitlines()[-1] == ("2 photos: 1 would restore, 1 failed")
    assert run("undo", "--list", "--json").stdout.count('"state": "done"') == 1


def test_undo_removes_the_folders_the_run_created_when_empty(two_albums, tmp_path):
    made = tmp_path / "new" / "Flowers"
    move(two_albums / "a", made)
    kept = tmp_path / "existing"
    kept.mkdir()
    move(two_albums / "b", kept / "Flowers")
    log = tmp_path / "undo.log"
    assert run("undo", "--log-file", log).exit_code == 0
    assert kept.is_dir() and not (kept / "Flowers").exists()  # only what flowersort made
    (made / "notes.txt").write_text("the user's own file")
    assert run("undo", "1").exit_code == 0
    assert (made / "notes.txt").exists()  # not empty: left alone
    assert f"INFO removed empty folder {kept / 'Flowers'}" in log.read_text()
    # the emptied source folders are the user's: undo put the photos back into them
    assert sorted(p.name for p in (two_albums / "a").iterdir()) == ["a0.jpg", "a0.xmp", "a1.jpg"]


# ---------------------------------------------------------------- help


@pytest.mark.parametrize(
    "name, codes",
    [
        ("train", ["0", "2", "4", "130/143"]),
        ("evaluate", ["0", "2", "4", "130/143"]),
        ("classify", ["0", "1", "2", "3", "4", "5", "6", "130/143", "141"]),
        ("undo", ["0", "1", "2", "3", "4", "6", "130/143", "141"]),
        ("ask", ["0", "1", "2", "3", "4", "5", "130/143", "141"]),
        ("adapt", ["0", "2", "4", "130/143"]),
        ("corrections", ["0", "2", "4"]),
        ("corrections list", ["0", "2", "4"]),
        ("corrections forget", ["0", "2", "4"]),
    ],
)
def test_each_command_lists_its_own_exit_codes(name, codes):
    text = " ".join(run(*name.split(), "--help").output.split())
    listed = re.search(r"Exit codes: (.*)$", text).group(1)
    assert re.findall(r"(?:^|, )(\d+(?:/\d+)?) ", listed) == codes
    if "1" not in codes:
        assert "moves failed" not in text and "lock" not in text


def test_every_option_is_described():
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and len(param.help) > 15, (name, param.name)


def test_tile_and_head_layer_help_explain_the_shapes():
    text = " ".join(run("train", "--help").output.split())
    assert "32,8,8,1 on a 12 x 6 tile gives 6 x 32, then 32 x 8, then 8 x 8, then 8 x 1" in text
    assert "16,1,1 on a 36 x 8 map gives 8 x 16, then 16 x 1" in text


def test_mode_help_describes_the_edge_hue_mode():
    """--mode's help describes each mode in the order of the choices: the last one,
    hue-sat-cues-edge-hue, too."""
    text = " ".join(run("train", "--help").output.split())
    assert "or the first with a 7th column, the hue of coloured pixels on brightness edges" in text


def test_classify_json_help_lists_the_keys_of_the_output(tmp_path, trained_model):
    text = " ".join(run("classify", "--help").output.split())
    listed = re.search(r"One JSON object a line per photo: \{([^}]*)\}", text).group(1)
    keys = [k.strip(' "') for k in listed.split(",")]
    (tmp_path / "p").mkdir()
    shutil.copy(ROOT / "sample_photos" / "flowers" / "flower_Garden.jpg", tmp_path / "p")
    line = run("classify", tmp_path / "p", "--json", "--model", trained_model).stdout
    assert keys == list(json.loads(line))


# ---------------------------------------------------------------- messages


def write_npz(path: Path, **arrays) -> None:
    import numpy as np

    np.savez(path, **{k: np.array(v) for k, v in arrays.items()})


def save_npy(path: Path, values) -> None:
    import numpy as np

    with open(path, "wb") as f:  # np.save would add .npy to the name
        np.save(f, np.array(values))


TRAIN_HINT = "not a flowersort model: give the .npz file written by 'flowersort train'"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("hello\n"), f"is a text file, {TRAIN_HINT}"),
        (lambda p: p.write_bytes(b""), f"is empty, {TRAIN_HINT}"),
        (
            lambda p: shutil.copy(ROOT / "sample_photos" / "flowers" / "flower_Garden.jpg", p),
            f"is an image, {TRAIN_HINT}",
        ),
        (
            lambda p: save_npy(p, [1, 2]),
            f"is a single numpy array (.npy), {TRAIN_HINT}",
        ),
        (
            lambda p: write_npz(p, weights=[1.0], labels=["a"]),
            "is a numpy archive of another program (it holds labels, weights), not a "
            "flowersort model: give a model written by 'flowersort train'",
        ),
        (
            lambda p: write_npz(p, format=9, features="{}"),
            "was written by a newer flowersort (model format 9; this version reads formats "
            "1, 2, 3): upgrade flowersort to use it",
        ),
        (
            lambda p: write_npz(p, format=2),
            "is incomplete or incompatible ('features'): train it again with 'flowersort train'",
        ),
        (
            lambda p: p.write_bytes(b"PK\x03\x04broken"),
            "is corrupt (File is not a zip file): train it again or restore it from a backup",
        ),
    ],
)
def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path, make, message):
    model = tmp_path / "model.npz"
    make(model)
    result = run("classify", tmp_path, "--model", model)
    assert result.exit_code == 2
    assert result.stderr == f"Error: model file {model} {message}\n"
    assert "allow_pickle" not in result.stderr


def test_a_folder_as_model_names_the_models_inside(tmp_path, trained_model):
    models = tmp_path / "models"
    models.mkdir()
    result = run("classify", tmp_path, "--model", models)
    assert result.stderr == (
        f"Error: model file {models} is a folder: give the model file (.npz) written by "
        "'flowersort train'\n"
    )
    shutil.copy(trained_model, models / "mine.npz")
    result = run("classify", tmp_path, "--model", models)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: model file {models} is a folder: give the model file such as "
        f"{models / 'mine.npz'}\n"
    )


def test_a_missing_model_says_what_to_do(tmp_path):
    result = run("classify", tmp_path, "--model", tmp_path / "mine.npz")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: model file not found: {tmp_path / 'mine.npz'} (train one with 'flowersort "
        "train', or leave out --model for the model shipped with flowersort)\n"
    )


def test_evaluate_by_folder_on_flat_folders_names_the_class(examples, trained_model):
    result = run("evaluate", *examples, "--model", trained_model, "--by-folder")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if " wrong of " in line]
    assert [row.split(":")[0] for row in rows] == ["flowers", "noflowers"]


# ---------------------------------------------------------------- train checks its input


@pytest.fixture
def small_examples(tmp_path):
    return make_folders(tmp_path / "x", 6, seed=4)


def test_train_refuses_the_same_folder_twice(small_examples, tmp_path, monkeypatch):
    flowers, _ = small_examples
    monkeypatch.chdir(tmp_path)
    result = run("train", "x/flowers", "./x/flowers/", "--model", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: FLOWERS and NOFLOWERS are the same folder (x/flowers): give a folder of "
        "flower photos and another of other photos\n"
    )
    assert not (tmp_path / "m.npz").exists()


def test_train_refuses_a_folder_inside_the_other(small_examples, tmp_path):
    flowers, noflowers = small_examples
    inner = flowers / "not really"
    shutil.copytree(noflowers, inner)
    result = run("train", flowers, inner, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: NOFLOWERS ({inner}) is inside FLOWERS ({flowers}): its photos would be "
        "examples of both classes\n"
    )


@pytest.mark.parametrize("inside", [False, True], ids=["same-folder", "one-inside-the-other"])
def test_evaluate_refuses_the_same_folder_twice_or_one_inside_the_other(
    small_examples, trained_model, inside
):
    """Each photo would be counted in both classes (a folder given twice counted every
    photo as a false flower: 'tp 0 fp 2')."""
    flowers, noflowers = small_examples
    inner = flowers
    if inside:
        inner = flowers / "not really"
        shutil.copytree(noflowers, inner)
    result = run("evaluate", flowers, inner, "--model", trained_model)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.startswith("Error: ")
    assert ("is inside FLOWERS" if inside else "are the same folder") in result.stderr


@pytest.mark.parametrize("how", ["link", "copy"])
def test_train_refuses_folders_that_share_files(small_examples, tmp_path, how):
    flowers, noflowers = small_examples
    (os.link if how == "link" else shutil.copy)(flowers / "fl_002.jpg", noflowers / "x.jpg")
    result = run("train", flowers, noflowers, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: FLOWERS and NOFLOWERS share 1 file (e.g. {flowers / 'fl_002.jpg'} and "
        f"{noflowers / 'x.jpg'}): a photo cannot teach both classes; keep it in one folder\n"
    )


def test_train_replaces_a_model_only_with_force(small_examples, tmp_path):
    model = tmp_path / "models" / "mine.npz"
    model.parent.mkdir()
    model.write_bytes(b"the good model")
    fast = ["--epochs", 2, "--members", 2, "--crops", 0, "--image-size", 32, "--grid", 4]
    result = run("train", *small_examples, "--model", model, *fast)
    assert result.exit_code == 2
    assert (
        result.stderr == f"Error: {model} exists: use --force to replace it, or another --model\n"
    )
    assert model.read_bytes() == b"the good model"
    result = run("train", *small_examples, "--model", model, *fast, "--force")
    assert result.exit_code == 0, result.output
    assert model.read_bytes() != b"the good model"


# ---------------------------------------------------------------- on a terminal


def run_on_a_terminal(args: list, env: dict) -> str:
    """Run flowersort with stdout and stderr on one 80-column pseudo-terminal, as a person
    sees it; return everything written to it."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowersort", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, out
    return out.decode("utf-8", "replace")


def test_lines_never_land_in_the_bar(archive, trained_model, tmp_path, state_home):
    (archive / "broken.jpg").write_bytes(b"not a photo")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XDG_STATE_HOME": str(state_home),
        "TERM": "xterm",
    }
    args = ["classify", archive, "--move-to", tmp_path / "Flowers", "--model", trained_model]
    screen = run_on_a_terminal([*args, "--workers", 1], env)
    assert "classifying" in screen  # there was a bar
    lines = screen.replace("\r\n", "\n").split("\n")
    printed = [line for line in lines if "moved: " in line or "skipped: " in line]
    assert len(printed) >= 6
    for line in printed:
        # what the terminal shows of this line: the text after its last carriage return
        before = line.split("moved: ")[0].split("skipped: ")[0].rsplit("\r", 1)[-1]
        assert before.strip(" \x1b[A") == "", repr(line)


# ---------------------------------------------------------------- --keep-structure


@pytest.fixture
def albums(tmp_path):
    import numpy as np

    from tests.conftest import make_photo, write_photo

    rng = np.random.default_rng(11)
    src = tmp_path / "Pictures"
    for album in ("2020/07 Отпуск в Крыму", "2021/08 京都旅行"):
        write_photo(src / album / "IMG_0001.jpg", make_photo(rng, True, 32))
    (src / "2020/07 Отпуск в Крыму" / "IMG_0001.xmp").write_text("<x/>")
    write_photo(src / "top.jpg", make_photo(rng, True, 32))
    return src


def test_keep_structure_keeps_the_albums_and_undo_removes_them(albums, tmp_path):
    dest = tmp_path / "Flowers"
    before = census(albums)
    args = ["classify", albums, "--move-to", dest, "--threshold", 0, "--workers", 1]
    planned = [
        json.loads(line)
        for line in run(*args, "--keep-structure", "--dry-run", "--json").stdout.splitlines()
    ]
    result = run(*args, "--keep-structure", "--json")
    assert result.exit_code == 0, result.output
    done = [json.loads(line) for line in result.stdout.splitlines()]
    crimea = dest / "2020" / "07 Отпуск в Крыму"
    assert [(d["detail"], d["sidecars"]) for d in done] == [
        (str(crimea / "IMG_0001.jpg"), [str(crimea / "IMG_0001.xmp")]),
        (str(dest / "2021" / "08 京都旅行" / "IMG_0001.jpg"), []),
        (str(dest / "top.jpg"), []),
    ]
    assert [(p["detail"], p["sidecars"]) for p in planned] == [
        (d["detail"], d["sidecars"]) for d in done
    ]
    assert census(dest) == before
    assert run("undo").exit_code == 0
    assert census(albums) == before and not dest.exists()


def test_keep_structure_dedupe_leaves_the_sidecars_by_the_twin_in_its_album(albums, tmp_path):
    dest = tmp_path / "Flowers"
    crimea = "2020/07 Отпуск в Крыму"
    (dest / crimea).mkdir(parents=True)
    (dest / crimea / "IMG_0001.jpg").write_bytes((albums / crimea / "IMG_0001.jpg").read_bytes())
    (albums / crimea / "IMG_0001.MOV").write_bytes(b"the motion of a live photo")
    before = census(albums, dest)
    args = ["classify", albums / "2020", "--move-to", dest / "2020", "--threshold", 0]
    result = run(*args, "--keep-structure", "--on-conflict", "dedupe", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "deduplicated: " in result.stdout
    album = dest / crimea
    assert sorted(p.name for p in album.iterdir()) == [
        "IMG_0001.MOV",
        "IMG_0001.jpg",
        "IMG_0001.xmp",
    ]
    assert sorted(p.name for p in (dest / "2020").iterdir()) == ["07 Отпуск в Крыму"]
    assert set(census(albums, dest)) == set(before)
    assert run("undo").exit_code == 0
    assert census(albums, dest) == before


def test_flat_is_the_default_and_numbers_the_clash(albums, tmp_path):
    dest = tmp_path / "Flowers"
    args = ["classify", albums, "--move-to", dest, "--threshold", 0, "--workers", 1]
    assert run(*args).exit_code == 0
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["IMG_0001 (1).jpg", "IMG_0001.jpg", "IMG_0001.xmp", "top.jpg"]


def test_nightly_copy_with_keep_structure_copies_once(albums, tmp_path):
    dest = tmp_path / "Copies"
    args = ["classify", albums, "--copy-to", dest, "--threshold", 0, "--keep-structure", "-q"]
    assert run(*args).exit_code == 0
    listing = sorted(dest.rglob("*"))
    again = run(*args)
    assert again.exit_code == 0 and again.output == ""
    assert sorted(dest.rglob("*")) == listing and len([p for p in listing if p.is_file()]) == 4


# ---------------------------------------------------------------- libjpeg's own warnings


def partly_decodable_jpeg(path: Path) -> Path:
    """A JPEG whose middle is missing but whose end marker is there: libjpeg decodes it,
    greys out the rest and prints 'Corrupt JPEG data: premature end of data segment'."""
    import cv2
    import numpy as np

    from tests.conftest import make_photo

    ok, buf = cv2.imencode(".jpg", make_photo(np.random.default_rng(2), True, 256))
    raw = buf.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw[: len(raw) // 2] + raw[-2:])
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_decoder_warnings_become_a_note_about_the_photo(tmp_path, trained_model, workers):
    photo = partly_decodable_jpeg(tmp_path / "Pictures" / "DSC_0001.jpg")
    log, report = tmp_path / "flowersort.log", tmp_path / "report.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "flowersort", "classify", photo.parent, "--model", trained_model]
    args += ["--threshold", 0, "--workers", workers, "--no-cache"]
    quiet = subprocess.run(
        [*map(str, args), "-q", "--log-file", str(log), "--report", str(report)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == ""  # nothing raw, without a name, for cron
    note = "decoded in part (Corrupt JPEG data: premature end of data segment)"
    assert f"INFO note: {photo}: {note}\n" in log.read_text()
    assert note in report.read_text()
    as_json = subprocess.run([*map(str, args), "--json"], capture_output=True, text=True, env=env)
    assert json.loads(as_json.stdout)["note"] == note
    assert "Corrupt JPEG" not in as_json.stderr.replace(f"note: {photo}: {note}", "")


# ---------------------------------------------------------------- the report


def report_rows(page: str) -> list[dict]:
    from tests.report_page import data_of

    return data_of(page)


def test_classify_report_links_each_photo_and_has_no_misclassified_filter(
    archive, trained_model, tmp_path
):
    dest, report = tmp_path / "Flowers", tmp_path / "report.html"
    args = ["classify", archive, "--move-to", dest, "--report", report, "--workers", 1]
    result = run(*args, "--model", trained_model, "--json")
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert 'value="wrong"' not in page and "misclassified" not in page
    assert "heat map, on photos called flowers:" in page and 'class="legend"' in page
    outcomes = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    for row in report_rows(page):
        now = outcomes[row["path"]]["detail"] if row["action"] == "moved" else row["path"]
        assert row["href"] == Path(now).as_uri()
        assert Path(now).exists()


def test_evaluate_report_keeps_the_misclassified_filter(examples, trained_model, tmp_path):
    report = tmp_path / "eval.html"
    result = run("evaluate", *examples, "--model", trained_model, "--report", report)
    assert result.exit_code == 0, result.output
    assert 'value="wrong"> misclassified' in report.read_text()


def chromium_dom(page: Path, profile: Path) -> str:
    from tests.report_page import run_chromium

    return run_chromium(profile, "--dump-dom", page.as_uri())


def test_report_as_drawn_heat_on_flowers_only_links_and_path_breaks(
    archive, trained_model, tmp_path
):
    from tests.report_page import chromium

    if chromium() is None:
        pytest.skip("chromium is not installed")
    deep = archive / ("a-very-long-folder-name-" * 3) / "IMG_0001.jpg"
    deep.parent.mkdir()
    shutil.copy(archive / "2024" / "garden" / "fl_000.jpg", deep)
    report = tmp_path / "report.html"
    args = ["classify", archive, "--report", report, "--workers", 1, "--model", trained_model]
    assert run(*args).exit_code == 0
    dom = chromium_dom(report, tmp_path / "profile")
    cards = dom.split('<div class="card')[1:]
    assert len(cards) == 13
    for card in cards:
        flower = 'class="score flower"' in card
        assert ('class="heat"' in card) == flower, card[:300]
        assert '<a href="file:///' in card
    deep_card = next(c for c in cards if "IMG_0001.jpg" in c)
    assert "a-very-long-folder-name-a-very-long-folder-name-a-very-long-folder-name-/<wbr>" in (
        deep_card
    )


def test_report_cards_say_which_path_is_where_the_photo_went(archive, trained_model, tmp_path):
    """A moved photo's card shows two paths: each says what it is."""
    from tests.report_page import chromium

    if chromium() is None:
        pytest.skip("chromium is not installed")
    report, dest = tmp_path / "report.html", tmp_path / "Flowers"
    args = ["classify", archive, "--move-to", dest, "--report", report, "--workers", 1]
    assert run(*args, "--model", trained_model).exit_code == 0
    dom = chromium_dom(report, tmp_path / "profile")
    cards = [c.split('<div class="mark"')[0] for c in dom.split('<div class="card')[1:]]
    texts = [re.sub(r"<[^>]+>", "", c) for c in cards]
    moved = [t for t in texts if "moved" in t]
    kept = [t for t in texts if "kept" in t]
    assert moved and kept
    for text in moved:
        assert f"moved to: {dest}/" in text and f"from: {archive}/" in text, text
    for text in kept:
        assert f"in: {archive}/" in text, text


def test_a_locked_out_run_creates_no_target_folder(archive, trained_model, tmp_path):
    from flowersort.sorting.lock import RunLock
    from flowersort.sorting.state import state_dir

    dest = tmp_path / "new" / "Flowers"
    with RunLock(state_dir()):
        result = run("classify", archive, "--move-to", dest, "--model", trained_model, "-q")
    assert result.exit_code == 3
    assert not (tmp_path / "new").exists()


def test_a_target_that_is_a_file_is_one_line_and_exit_2(archive, trained_model, tmp_path):
    from flowersort.base.errors import FlowersortError
    from flowersort.model.file import load_model
    from flowersort.sorting.sorter import classify

    target = tmp_path / "Flowers"
    target.write_text("a file, not a folder")
    with pytest.raises(FlowersortError, match="^the target .*Flowers is not a folder$"):
        list(classify(load_model(trained_model), archive, target, threshold=0))
    assert target.read_text() == "a file, not a folder"


def test_copies_and_dedupes_are_logged_too(archive, trained_model, tmp_path):
    dest, log = tmp_path / "Flowers", tmp_path / "f.log"
    args = ["classify", archive, "--model", trained_model, "-q", "--log-file", log]
    assert run(*args, "--copy-to", dest).exit_code == 0
    copied = [line for line in log.read_text().splitlines() if " INFO copied: " in line]
    assert len(copied) == len(list(dest.glob("*.jpg"))) >= 5
    assert any(line.endswith(" + .CR2, .xmp") for line in copied)
    other = tmp_path / "Other"
    assert run(*args, "--move-to", other).exit_code == 0  # the originals move elsewhere
    for p in other.glob("*.jpg"):  # and the same photos come back to the archive
        shutil.copy(p, archive / p.name)
    assert run(*args, "--move-to", dest, "--on-conflict", "dedupe").exit_code == 0
    deduped = [line for line in log.read_text().splitlines() if " INFO deduplicated: " in line]
    assert len(deduped) == len(copied)
    for line in deduped:
        source, twin = re.search(r"deduplicated: (.+) -> (.+) \(\d\.\d{3}\)$", line).groups()
        assert not Path(source).exists() and Path(twin).parent == dest


def test_train_quiet_prints_nothing_and_logs_the_model_it_wrote(examples, tmp_path):
    """The README's weekly cron line trains with --quiet: cron mails whatever is printed."""
    model, log = tmp_path / "mine.npz", tmp_path / "logs" / "train.log"
    result = run(
        "train", *examples, "--model", model, "--epochs", 3, "--image-size", 48, "--grid", 4,
        "--workers", 1, "--quiet", "--log-file", log,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == "" and model.is_file()
    text = log.read_text()
    assert f"INFO model written to {model}: validation accuracy" in text
    assert f"INFO validation report written to {model.with_suffix('.validation.html')}" in text


def test_undo_list_reads_a_journal_it_cannot_write(tmp_path, state_home):
    """undo --list only reads: it works when the state folder cannot be written (made
    immutable here, which binds root too)."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr")
    src = nested_archive(tmp_path)
    moved = run("classify", src, "--move-to", tmp_path / "Flowers", "--threshold", 0)
    assert moved.exit_code == 0, moved.output
    folder = state_home / "flowersort"
    if subprocess.run(["chattr", "+i", folder], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    try:
        before = sorted(p.name for p in folder.iterdir())
        result = run("undo", "--list", "--json")
        after = sorted(p.name for p in folder.iterdir())
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["run"], r["photos"], r["state"]) for r in runs] == [(1, 12, "done")]
    assert after == before  # nothing written


# ---------------------------------------------------------------- quiet nights


def test_an_empty_source_creates_nothing_and_exits_5(trained_model, tmp_path):
    """An unmounted NAS: its mount point is an empty folder. No Flowers/ is made in it."""
    mount_point, log = tmp_path / "nas", tmp_path / "flowersort.log"
    mount_point.mkdir()
    for how in (["--move-to", mount_point / "Flowers"], ["--dry-run"], []):
        args = ["classify", mount_point, *how, "--model", trained_model, "--quiet"]
        result = run(*args, "--log-file", log)
        assert result.exit_code == 5, result.output
        assert result.stdout == ""
        assert result.stderr == (
            f"Error: {mount_point} is empty: nothing to do, nothing created (is it mounted?)\n"
        )
        assert os.listdir(mount_point) == []
    assert log.read_text().count(f"ERROR Error: {mount_point} is empty") == 3
    assert "5 SRC is an empty folder" in " ".join(run("classify", "--help").output.split())


def test_errors_before_the_run_starts_go_to_the_log_file_too(archive, trained_model, tmp_path):
    from flowersort.sorting.lock import RunLock
    from flowersort.sorting.state import state_dir

    log = tmp_path / "logs" / "flowersort.log"
    missing = tmp_path / "unmounted" / "Pictures"
    result = run("classify", missing, "--move-to", tmp_path / "F", "-q", "--log-file", log)
    assert result.exit_code == 2
    (line,) = log.read_text().splitlines()
    assert line.endswith(f"ERROR {result.stderr.strip()}") and str(missing) in line
    with RunLock(state_dir()):
        locked = run("classify", archive, "--move-to", tmp_path / "F", "-q", f"--log-file={log}")
    assert locked.exit_code == 3
    assert log.read_text().splitlines()[-1].endswith(f"ERROR {locked.stderr.strip()}")
    assert len(log.read_text().splitlines()) == 2  # said once, not by each group around it


def test_a_photo_skipped_for_a_lasting_reason_is_said_once_then_counted(
    archive, trained_model, tmp_path
):
    (archive / "notes.jpg").write_text("shopping list")
    log = tmp_path / "flowersort.log"
    args = ["classify", archive, "--move-to", archive / "Flowers", "--model", trained_model]
    first = run(*args, "--quiet", "--log-file", log)
    assert first.exit_code == 0
    notes = f"skipped: {archive / 'notes.jpg'}: not an image OpenCV can decode"
    assert notes in first.stderr  # the first night's mail says it
    for _ in range(2):
        again = run(*args, "--quiet", "--log-file", log)
        assert again.exit_code == 0 and again.stderr == "", again.stderr  # no mail
    text = log.read_text()
    assert text.count(notes) == 1
    assert text.count("INFO 1 photo skipped as on an earlier run: unchanged since") == 2
    assert text.count(", 1 skipped, 0 failed") == 3  # still counted
    (archive / "notes.jpg").write_text("a new shopping list")  # changed: said again
    assert notes in run(*args, "--quiet").stderr


def test_log_file_that_is_a_link_is_refused(archive, trained_model, tmp_path):
    """A root run's --log-file in a folder its owner writes: the owner's link to a file of
    root's is not followed (the lines hold the owner's file names)."""
    victim = tmp_path / "bashrc"
    victim.write_text("# root's start-up file\n")
    log = tmp_path / "flowersort.log"
    log.symlink_to(victim)
    result = run("classify", archive, "--model", trained_model, "-q", "--log-file", log)
    assert result.exit_code == 2
    assert result.stderr == f"Error: cannot write the log file {log}: it is a symbolic link\n"
    assert victim.read_text() == "# root's start-up file\n"
