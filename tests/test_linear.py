"""Linear in the archive (issue 28): a folder is listed once per run, not once per photo,
and a photo's sidecars, Live Photo .MOV and RAW twin still go with it, on a disk that
keeps case and on one that ignores it (exFAT)."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT_ON_A_STICK, census, exfat, make_photo, run, write_photo

PHOTOS = 60


def archive_of_groups(folder: Path, n: int) -> list[str]:
    """n photos in one folder, most with companions in other cases: a sidecar, a Live
    Photo .MOV, a RAW twin, a Google Takeout NAME.jpg.json. Returns every file's name."""
    rng = np.random.default_rng(3)
    for i in range(n):
        photo = write_photo(folder / f"IMG_{i:04d}.jpg", make_photo(rng, True, size=32))
        companion = ("IMG_%04d.XMP", "img_%04d.MOV", "IMG_%04d.CR2", "IMG_%04d.jpg.json")[i % 4]
        if i % 5:  # every fifth photo comes alone
            (folder / (companion % i)).write_bytes(f"companion of {photo.name}".encode())
    return sorted(p.name for p in folder.iterdir())


@contextlib.contextmanager
def counting_listings(monkeypatch):
    """Count os.listdir and os.scandir calls by folder (absolute)."""
    listed: Counter = Counter()
    listdir, scandir = os.listdir, os.scandir

    def counted(real):
        def wrapper(path="."):
            listed[os.path.abspath(path)] += 1
            return real(path)

        return wrapper

    with monkeypatch.context() as m:
        m.setattr(os, "listdir", counted(listdir))
        m.setattr(os, "scandir", counted(scandir))
        yield listed


@pytest.mark.parametrize("dry_run", [False, True], ids=["move", "dry-run"])
def test_a_folder_is_listed_once_per_run_not_once_per_photo(tmp_path, monkeypatch, dry_run):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    files = archive_of_groups(src, PHOTOS)
    dest.mkdir()
    (dest / "IMG_0006.JPG").write_bytes(b"an older photo: the group of IMG_0006 is numbered")
    before = census(src, dest)
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--json", "--workers", 1]
    with counting_listings(monkeypatch) as listed:
        result = run(*args, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    # the walk, the companions (once), the target's names (once), the corrections' walk
    assert listed[str(src)] <= 3, listed
    assert listed[str(dest)] <= 3, listed
    outcomes = [json.loads(s) for s in result.output.splitlines() if s.startswith("{")]
    assert len(outcomes) == PHOTOS
    sides = {os.path.basename(o["path"]): o["sidecars"] for o in outcomes}
    assert sum(len(s) for s in sides.values()) == len(files) - PHOTOS  # each companion once
    assert [os.path.basename(s) for s in sides["IMG_0006.jpg"]] == ["IMG_0006 (1).CR2"]
    if dry_run:
        assert census(src, dest) == before
    else:
        assert os.listdir(src) == []
        assert census(dest) == before
        assert sorted(os.listdir(dest)) == sorted(
            ["IMG_0006.JPG"] + [n.replace("0006", "0006 (1)") for n in files]
        )


def live_and_raw(folder: Path) -> None:
    """Stills whose companions a renamer left in other cases, and a clash to number."""
    rng = np.random.default_rng(4)
    for i in range(6):
        write_photo(folder / f"img_{i:04d}.jpg", make_photo(rng, True, size=32))
        (folder / f"IMG_{i:04d}.MOV").write_bytes(b"the motion of a live photo %d" % i)
        (folder / f"IMG_{i:04d}.cr2").write_bytes(b"the raw twin %d" % i)
        (folder / f"img_{i:04d}.jpg.json").write_bytes(b"{}")
        (folder / f"Img_{i:04d}.AAE").write_bytes(b"edits %d" % i)


@pytest.mark.parametrize("disk", ["keeps-case", "exfat"])
def test_companions_move_with_their_photo_onto_either_kind_of_disk(tmp_path, disk):
    src = tmp_path / "Pictures"
    live_and_raw(src)
    target = tmp_path / "Flowers"
    with exfat(target) if disk == "exfat" else contextlib.nullcontext(target) as dest:
        dest.mkdir(exist_ok=True)
        (dest / "IMG_0002.JPG").write_bytes(b"an older photo in another case")
        before = census(src, dest)
        stick = ROOT_ON_A_STICK if disk == "exfat" else ()
        result = run("classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, *stick)
        assert result.exit_code == 0, result.output
        assert os.listdir(src) == []
        got = sorted(p.name for p in dest.iterdir())
        assert census(dest) == before
    expected = []
    for i in range(6):
        expected += [f"img_{i:04d}.jpg", f"IMG_{i:04d}.MOV", f"IMG_{i:04d}.cr2"]
        expected += [f"img_{i:04d}.jpg.json", f"Img_{i:04d}.AAE"]
    # img_0002.jpg clashes in any case: its whole group takes the numbered stem
    expected = [n if "0002" not in n else "img_0002 (1)" + n[8:] for n in expected]
    expected.append("IMG_0002.JPG")
    assert got == sorted(expected), got


def test_a_run_that_decodes_nothing_does_not_load_opencv(tmp_path):
    """Start-up: a run over an empty folder (or a rerun that finds nothing new) needs no
    decoder, and OpenCV is a tenth of what a run imports."""
    empty = tmp_path / "Pictures"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photo here")  # an empty SRC is exit 5: a mount point
    args = ["-X", "importtime", "-m", "flowersort", "classify", empty, "--move-to", tmp_path / "F"]
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "numpy" in imported and "cv2" not in imported
    # nor what only training on many cores, or a tag written, needs
    assert "multiprocessing.managers" not in imported and "urllib.request" not in imported


def test_the_model_goes_to_each_worker_once_not_with_every_chunk(tmp_path, monkeypatch):
    from flowersort.model.file import Model, default_model_path, load_model
    from flowersort.scoring.pipeline import CHUNK, score_photos

    rng = np.random.default_rng(5)
    photos = [write_photo(tmp_path / f"{i}.jpg", make_photo(rng, True, 32)) for i in range(64)]
    model, pickled = load_model(default_model_path()), []

    def counted(self, protocol):
        pickled.append(self)
        return object.__reduce_ex__(self, protocol)

    monkeypatch.setattr(Model, "__reduce_ex__", counted, raising=False)
    scores = [s.score for s in score_photos(model, photos, workers=2)]
    assert len(photos) // CHUNK == 4 and None not in scores
    assert len(pickled) <= 2  # none when the workers are forked, one each when spawned


@contextlib.contextmanager
def counting_stats(monkeypatch, below: Path):
    """Count os.stat calls by path, for the paths below a folder."""
    stats: Counter = Counter()
    real = os.stat

    def counted(path, *args, **kwargs):
        if os.fspath(path).startswith(os.fspath(below)):
            stats[os.fspath(path)] += 1
        return real(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "stat", counted)
        yield stats


@pytest.mark.parametrize("dry_run", [False, True], ids=["move", "dry-run"])
def test_a_rerun_stats_each_photo_once_with_vetoes_in_the_store(tmp_path, monkeypatch, dry_run):
    """The walk's stat of a photo gives the score cache its key and the corrections their
    size: a rerun over an unchanged archive stats each photo once, not once per question."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    rng = np.random.default_rng(6)
    for i in range(12):
        write_photo(src / f"IMG_{i:04d}.jpg", make_photo(rng, True, size=32))
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1]
    assert run(*args).exit_code == 0
    back = sorted(dest.iterdir())[:4]
    for i, photo in enumerate(back):  # taken back by hand: vetoes, learnt by the next run
        photo.rename(src / f"kept {i}.jpg")
    assert run(*args).exit_code == 0
    before = census(src, dest)
    with counting_stats(monkeypatch, src) as stats:
        result = run(*args, "--json", *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    outcomes = [json.loads(s) for s in result.output.splitlines() if s.startswith("{")]
    assert sorted(o["action"] for o in outcomes) == ["vetoed"] * 4  # the vetoes hold
    assert census(src, dest) == before
    photos = [os.fspath(p) for p in src.iterdir()]
    assert photos and all(stats[p] <= 1 for p in photos), stats


def test_suffix_of_is_splitext_lowercased():
    """The walk's own cut of a name's suffix (archive.suffix_of) agrees with
    os.path.splitext, leading dots and all."""
    import itertools

    from flowersort.photos.archive import suffix_of

    names = ["IMG_1.JPG", "a.tar.Gz", ".jpg", "..jpg", ".a.jpg", "..a.JPEG", "a.", "", "."]
    names += ["".join(c) for n in range(1, 6) for c in itertools.product("a.", repeat=n)]
    for name in names:
        assert suffix_of(name) == os.path.splitext(name)[1].lower(), name


def test_the_score_cache_tells_folders_apart_whatever_the_spelling(tmp_path, monkeypatch):
    """ScoreCache.get keeps one folder's rows while the walk is in it, and cuts each path
    as os.path.split does: a name without a folder is not taken for one in a folder whose
    name begins the same, nor the other way round."""
    from flowersort.scoring.cache import ScoreCache

    monkeypatch.chdir(tmp_path)
    cache = ScoreCache(tmp_path / "scores.sqlite", "model")
    key = (100, 1, 2)
    scores = {"abc": 0.1, "ab/abc": 0.2, "ab/c.jpg": 0.3, "ab/d/c.jpg": 0.4, "/abc": 0.5}
    for path, score in scores.items():
        cache.put(path, key, score, "")
    for path in ["ab/c.jpg", "abc", "ab/abc", "ab/d/c.jpg", "abc", "/abc", "ab/c.jpg"]:
        assert cache.get(path, key) == (scores[path], ""), path
    assert cache.get(Path("ab") / "abc", key) == (0.2, "")
    cache.close()


def test_a_plan_looks_at_the_folders_up_to_the_root_once_not_once_per_photo(tmp_path, monkeypatch):
    """Whether a move would let more people read a photo depends on every folder up to
    the root: a dry run looks at each once per run (a real move looks again, right before
    it moves)."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    rng = np.random.default_rng(7)
    for i in range(PHOTOS):
        write_photo(src / f"IMG_{i:04d}.jpg", make_photo(rng, True, size=32))
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, "--json"]
    assert run(*args, "--dry-run").exit_code == 0  # scored: the next plan decodes nothing
    with counting_stats(monkeypatch, tmp_path.parent) as stats:
        result = run(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.count('"action": "would-move"') == PHOTOS
    assert 0 < stats[os.fspath(tmp_path)] <= 10, stats  # the folder above SRC and DEST
    assert 0 < stats[os.fspath(src)] <= 10, stats  # 126 once per photo


def test_the_walk_goes_depth_first_in_name_order_through_a_deep_tree(tmp_path):
    """archive.walk keeps a stack of the folders it lists: the same order as one generator
    per folder, every photo once, at any depth."""
    from flowersort.photos.archive import walk

    for parts in [("a",), ("a", "b", "c", "d"), ("a", "b"), ("b",), ("a", "b", "c"), ()]:
        folder = tmp_path.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("2.jpg", "10.JPG", "notes.txt"):
            (folder / name).write_bytes(b"x")

    def by_hand(folder: Path):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir():
                yield from by_hand(Path(entry.path))
            elif entry.name.endswith((".jpg", ".JPG")):
                yield entry.path

    expected = list(by_hand(tmp_path))
    assert len(expected) == 12 and list(walk(tmp_path)) == expected
    assert list(walk(tmp_path, prune=[tmp_path / "a" / "b"])) == [
        p for p in expected if "/a/b/" not in p
    ]


def test_a_rerun_makes_no_path_object_per_photo_flowersort_placed(tmp_path, monkeypatch):
    """Watch.start goes through every photo flowersort placed in DEST on each run: their
    paths are kept as text, not made into a Path each (most of its cost per photo)."""
    import pathlib

    from flowersort.sorting import corrections, watch

    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    rng = np.random.default_rng(8)
    for i in range(PHOTOS):
        write_photo(src / f"IMG_{i:04d}.jpg", make_photo(rng, True, size=32))
    (src / "notes.txt").write_text("not a photo: SRC is not left empty (a disk not mounted)")
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1]
    assert run(*args).exit_code == 0
    assert len(os.listdir(dest)) == PHOTOS
    made = []

    def counted(*parts):
        made.append(parts)
        return pathlib.Path(*parts)

    monkeypatch.setattr(corrections, "Path", counted)  # the store
    monkeypatch.setattr(watch, "Path", counted)  # Watch.start
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    assert len(made) < PHOTOS // 4, made
    (dest / "IMG_0003.jpg").rename(src / "taken back.jpg")  # still recognised: a veto
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    assert '"action": "vetoed"' in result.output and (src / "taken back.jpg").exists()


@contextlib.contextmanager
def counting_hashes(monkeypatch):
    """Count the photos Watch hashes (safefs content keys), by path."""
    from flowersort.sorting import watch

    hashed: Counter = Counter()

    def counted(real):
        def wrapper(path):
            hashed[os.path.basename(path)] += 1
            return real(path)

        return wrapper

    with monkeypatch.context() as m:
        m.setattr(watch, "content_key", counted(watch.content_key))
        m.setattr(watch, "content_key_and_version", counted(watch.content_key_and_version))
        yield hashed


def same_size_photos(folder: Path, n: int) -> None:
    """n photos of one size: the same pixels, each made unique by a comment of fixed width
    (as benchmarks/scale.py makes them), so that a veto of one has the size of them all."""
    ok, buf = cv2.imencode(".jpg", make_photo(np.random.default_rng(9), True, size=32))
    assert ok
    folder.mkdir(parents=True)
    for i in range(n):
        text = b"flowersort test %04d" % i
        segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
        (folder / f"IMG_{i:04d}.jpg").write_bytes(buf[:2].tobytes() + segment + buf[2:].tobytes())


@pytest.mark.parametrize("dry_run", [False, True], ids=["move", "dry-run"])
def test_a_rerun_hashes_an_unchanged_photo_a_veto_might_be_once_not_every_night(
    tmp_path, monkeypatch, dry_run
):
    """A photo whose size a veto has is hashed to know whether it is the vetoed photo; its
    hash is kept in the score cache by the photo's version (size, mtime_ns, inode), so an
    unchanged one is not hashed again on every rerun, but one written since, or replaced by
    another file, is (and what its new bytes are decides)."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    same_size_photos(src, 8)
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, "--json"]
    assert run(*args).exit_code == 0
    for i, photo in enumerate(sorted(dest.iterdir())[:3]):  # taken back: vetoes
        photo.rename(src / f"kept {i}.jpg")
    assert run(*args).exit_code == 0  # learns them
    rerun = [*args, *(["--dry-run"] if dry_run else [])]
    assert run(*rerun).exit_code == 0  # hashes each once more (the version is new to it)
    with counting_hashes(monkeypatch) as hashed:
        result = run(*rerun)
    assert result.exit_code == 0, result.output
    assert result.output.count('"action": "vetoed"') == 3
    assert sum(hashed.values()) == 0, hashed  # 3 a night before
    # written since (new bytes, the same size), or replaced by a copy (another inode)
    back = src / "kept 0.jpg"
    other = (dest / "IMG_0007.jpg").read_bytes()
    assert len(other) == back.stat().st_size
    back.write_bytes(other)
    os.utime(back, ns=(back.stat().st_atime_ns, back.stat().st_mtime_ns + 10**9))
    copy, new = src / "kept 1.jpg", tmp_path / "copy.jpg"
    new.write_bytes(copy.read_bytes())  # the vetoed bytes still, under a new inode
    os.utime(new, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns))
    new.replace(copy)
    with counting_hashes(monkeypatch) as hashed:
        result = run(*rerun)
    assert result.exit_code == 0, result.output
    assert hashed["kept 0.jpg"] >= 1 and hashed["kept 1.jpg"] == 1, hashed  # (0: placed too)
    assert hashed["kept 2.jpg"] == 0, hashed
    actions = {os.path.basename(o["path"]): o["action"] for o in map(json.loads, lines(result))}
    assert actions["kept 1.jpg"] == "vetoed" and actions["kept 2.jpg"] == "vetoed"
    # no veto now: the bytes of a photo never taken back (a copy of one in DEST: twin)
    assert actions["kept 0.jpg"] != "vetoed", actions


def lines(result) -> list[str]:
    return [s for s in result.output.splitlines() if s.startswith("{")]


def test_a_score_cache_of_the_layout_before_hashes_keeps_its_scores(tmp_path):
    """Version 4 of the score cache holds a photo's hash beside its score: a version 3
    cache gets the column, and keeps its scores (no night of decoding everything again)."""
    import sqlite3

    from flowersort.scoring.cache import ScoreCache

    path, key = tmp_path / "scores.sqlite", (100, 1, 2)
    with sqlite3.connect(path) as db:  # as version 3 wrote it
        db.execute(
            "CREATE TABLE scores (dir BLOB, name BLOB, size INTEGER, mtime_ns INTEGER, "
            "inode INTEGER, model TEXT, score REAL, reason TEXT, PRIMARY KEY (dir, name))"
        )
        db.execute(
            "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (os.fsencode(tmp_path), b"a.jpg", *key, "model", 0.25, ""),
        )
        db.execute("PRAGMA user_version = 3")
    db.close()
    cache = ScoreCache(path, "model")
    photo = os.fspath(tmp_path / "a.jpg")
    assert cache.get(photo, key) == (0.25, "")
    assert cache.content(photo, key) is None
    cache.put_content(photo, key, "ab" * 32)
    assert cache.content(photo, key) == "ab" * 32
    assert cache.content(photo, (100, 1, 3)) is None  # another inode: another file
    cache.close()
    again = ScoreCache(path, "model")
    assert again.content(photo, key) == "ab" * 32  # from the database, no folder in hand
    assert again.get(photo, key) == (0.25, "") and again.content(photo, key) == "ab" * 32
    again.close()


def test_a_plan_asks_who_a_move_lets_in_once_per_kind_of_photo_not_per_photo(tmp_path, monkeypatch):
    """Who a move would let read a photo depends on its folders' modes (looked at once per
    run) and on the photo's own mode, owner and group: a plan works it out once for each
    kind, and a photo of another mode beside them is still told apart (0644 in a 0700
    folder would be readable by everyone in an open target: it stays)."""
    import tempfile

    from flowersort.safefs import privacy

    src = tmp_path / "Pictures"
    rng = np.random.default_rng(10)
    for i in range(8):
        photo = write_photo(src / "closed" / f"IMG_{i:04d}.jpg", make_photo(rng, True, 32))
        photo.chmod(0o644 if i % 4 == 3 else 0o600)
    (src / "closed").chmod(0o700)
    open_tree = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp lets everyone in
    try:
        open_tree.chmod(0o755)
        dest = open_tree / "Flowers"
        args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, "--json"]
        assert run(*args, "--dry-run").exit_code == 1  # scored: the next plan decodes nothing
        asked: list = []
        real = privacy._readers
        monkeypatch.setattr(privacy, "_readers", lambda *a: asked.append(a) or real(*a))
        result = run(*args, "--dry-run")
        assert result.exit_code == 1, result.output
        actions = {os.path.basename(o["path"]): o["action"] for o in map(json.loads, lines(result))}
        assert actions == {
            f"IMG_{i:04d}.jpg": "failed" if i % 4 == 3 else "would-move" for i in range(8)
        }
        assert len(asked) == 2, asked  # 8 before: once per photo
    finally:
        shutil.rmtree(open_tree)


@pytest.mark.parametrize("dry_run", [False, True], ids=["move", "dry-run"])
def test_a_photo_already_linked_into_the_target_is_found(tmp_path, dry_run):
    """A move cut short leaves the photo's own file in the target under a numbered name,
    its record gone: the run finds it and finishes the move rather than give the photo a
    second name there."""
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    src.mkdir()
    dest.mkdir()
    photo = write_photo(src / "IMG_0001.jpg", make_photo(np.random.default_rng(5), True, size=32))
    (dest / "IMG_0001.jpg").write_bytes(b"another photo of that name")
    os.link(photo, dest / "IMG_0001 (1).jpg")
    args = ["classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, "--json"]
    result = run(*args, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout.splitlines()[0])
    assert said["action"] == ("would-deduplicate" if dry_run else "deduplicated")
    assert said["detail"] == str(dest / "IMG_0001 (1).jpg")
    assert photo.exists() == dry_run
    assert sorted(os.listdir(dest)) == ["IMG_0001 (1).jpg", "IMG_0001.jpg"]
