"""Differential check: the CLI of two versions of flowersort over the same generated mixed
archive, step by step, compared on what they print (--json lines, stderr, exit codes) and the
files they leave. For a refactoring that must change nothing a user can see.

    git worktree add /tmp/house-base a15b4ee   # the version to compare against
    python benchmarks/differential.py /tmp/house-base .

Against a15b4ee (the refactoring's base) one line differs on purpose: the real run of
borderline-no-review says what --review-to would do with its borderline photo (9409b4e,
a feature that came to main beside the refactoring).

Each scenario runs in a fresh sandbox per version (archive, target, state and cache folders),
from the sandbox as working folder, with PYTHONPATH set to the version's tree. Sandbox paths
and the run's start time are normalised before comparing. Each dry run is also compared with
the same command run for real right after it (would-move taken for moved, and so on). A
difference is allowed only in a dry run that the new version makes say what its real run
does; any other, or a new dry run unlike its real run, exits 1. The exFAT scenario needs
root, mkfs.exfat and FUSE, and is left out without them; its commands run with
--run-as root in a version that has the option (a root run over a stick whose files every
user may change is refused without it), as versions before it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_photos"
FLOWERS = sorted((SAMPLES / "flowers").iterdir())  # FreshFlower scores 0.575: borderline
OTHERS = sorted((SAMPLES / "noflowers").iterdir())


def make_archive(root: Path) -> None:
    """Moves, name clashes (the same name in two folders and in the target), sidecars, a
    byte-identical twin in the target, a file that is no photo, a video passed over."""
    src, dest = root / "archive", root / "target"
    for folder in ("2020/07 Trip", "2021", "2021/Phone"):
        (src / folder).mkdir(parents=True)
    dest.mkdir(exist_ok=True)  # a mount point already, for an exFAT target
    for i, f in enumerate(FLOWERS):
        shutil.copy(f, src / "2020/07 Trip" / f"IMG_{i:04d}.jpg")
    (src / "2020/07 Trip/IMG_0001.xmp").write_text("<xmp one/>")
    (src / "2020/07 Trip/IMG_0002.AAE").write_text("<aae/>")
    (src / "2020/07 Trip/IMG_0002.jpg.json").write_text("{}")
    # the same name in another folder, other bytes: a clash within the run
    shutil.copy(FLOWERS[2], src / "2021" / "IMG_0001.jpg")
    (src / "2021/IMG_0001.xmp").write_text("<xmp two/>")
    # a byte-identical twin already in the target, with a sidecar beside the source
    shutil.copy(FLOWERS[3], src / "2021/Phone" / "twin.jpg")
    (src / "2021/Phone/twin.xmp").write_text("<xmp twin/>")
    shutil.copy(FLOWERS[3], dest / "twin.jpg")
    # a file of the name a photo would take, other bytes: numbered
    shutil.copy(OTHERS[1], dest / "IMG_0003.jpg")
    for i, f in enumerate(OTHERS):
        shutil.copy(f, src / "2021" / f"other_{i}{f.suffix}")
    (src / "2021/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (src / "2021/clip.mp4").write_bytes(b"\x00" * 64)


# (name, [(step name, argv after "flowersort" or a callable(root))])
def veto(root: Path) -> None:
    """The user takes a moved photo back out of the target: a veto on the next run."""
    moved = sorted((root / "target").rglob("IMG_0001.jpg"))
    if moved:
        moved[0].rename(root / "archive" / "taken back.jpg")


def confirm(root: Path) -> None:
    """The user drops a photo into the target: a flower example."""
    shutil.copy(OTHERS[0], root / "target" / "mine.jpg")


MOVE = ["classify", "archive", "--move-to", "target"]
COPY = ["classify", "archive", "--copy-to", "target"]
REVIEW = ["--review-to", "review", "--threshold", "0.6", "--review-band", "0.05"]
BAND = ["--threshold", "0.6", "--review-band", "0.05"]  # FreshFlower (0.575) borderline
KEEP = ["--keep-structure"]
DRY = ["--dry-run"]
SCENARIOS = {
    "move-review-veto-undo": [
        ("dry", MOVE + REVIEW + DRY),
        ("move", MOVE + REVIEW),
        ("veto", veto),
        ("confirm", confirm),
        ("dry-again", MOVE + REVIEW + DRY),
        ("again", MOVE + REVIEW),
        ("list", ["undo", "--list"]),
        ("undo-dry", ["undo", "--dry-run"]),
        ("undo", ["undo"]),
        ("undo-first-dry", ["undo", "1", "--dry-run"]),
        ("undo-first", ["undo", "1"]),
        ("undo-twice", ["undo", "1"]),
    ],
    "borderline-no-review": [
        ("dry", MOVE + BAND + DRY),
        ("move", MOVE + BAND),
        ("undo", ["undo"]),
    ],
    "copy-keep-structure": [
        ("dry", COPY + KEEP + DRY),
        ("copy", COPY + KEEP),
        ("dry-again", COPY + KEEP + DRY),
        ("again", COPY + KEEP),
        ("undo-dry", ["undo", "--dry-run"]),
        ("undo", ["undo"]),
    ],
    "move-keep-structure": [
        ("dry", MOVE + KEEP + DRY),
        ("move", MOVE + KEEP),
        ("dry-again", MOVE + KEEP + DRY),
        ("again", MOVE + KEEP),
        ("undo-dry", ["undo", "--dry-run"]),
        ("undo", ["undo"]),
    ],
    "dedupe": [
        ("dry", MOVE + ["--on-conflict", "dedupe"] + DRY),
        ("dedupe", MOVE + ["--on-conflict", "dedupe"]),
        ("undo-dry", ["undo", "--dry-run"]),
        ("undo", ["undo"]),
    ],
    "skip": [
        ("dry", MOVE + ["--on-conflict", "skip"] + DRY),
        ("skip", MOVE + ["--on-conflict", "skip"]),
        ("undo", ["undo"]),
    ],
    "copy-twice-rename": [
        ("copy", COPY),
        ("dry-again", COPY + DRY),
        ("again", COPY),
        ("undo", ["undo"]),
    ],
    # the target on exFAT (a USB stick: no hard links, no modes, names in any case)
    "exfat-move-copy-undo": [
        ("dry", MOVE + DRY),
        ("move", MOVE),
        ("undo", ["undo"]),
        ("copy", COPY),
        ("dry-again", COPY + DRY),
        ("again", COPY),
        ("undo", ["undo"]),
    ],
    "list-only": [
        ("list", ["classify", "archive", "--threshold", "0.5"]),
    ],
}

# journals written by one version, read by the other (recovery, undo, an earlier run's
# copy found through the journal): each compared with the same steps all run by the old one
DEDUPE = MOVE + ["--on-conflict", "dedupe"]
CROSS = {
    "old journal, new undo": [
        ("dedupe", DEDUPE, "old"),
        ("list", ["undo", "--list"], "new"),
        ("undo-dry", ["undo", "--dry-run"], "new"),
        ("undo", ["undo"], "new"),
    ],
    "new journal, old undo": [
        ("dedupe", DEDUPE, "new"),
        ("list", ["undo", "--list"], "old"),
        ("undo-dry", ["undo", "--dry-run"], "old"),
        ("undo", ["undo"], "old"),
    ],
    "old copy, new copy again": [
        ("copy", COPY + KEEP, "old"),
        ("again", COPY + KEEP, "new"),
        ("undo", ["undo"], "new"),
    ],
    "new copy, old copy again": [
        ("copy", COPY + KEEP, "new"),
        ("again", COPY + KEEP, "old"),
        ("undo", ["undo"], "old"),
    ],
}


def tree(root: Path) -> dict[str, str]:
    """Every file under root (but the state and cache folders), by relative path: its
    sha256, and its mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in ("state", "cache"):
            continue
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            out[rel] = f"{digest} {oct(path.stat().st_mode & 0o777)}"
        elif path.is_dir():
            out[rel + "/"] = "dir"
    return out


def normalise(text: str, root: Path, code: Path) -> str:
    text = text.replace(str(root), "<ROOT>").replace(str(code), "<CODE>")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<TIME>", text)
    return text


@contextlib.contextmanager
def exfat(folder: Path) -> Iterator[bool]:
    """folder becomes an exFAT filesystem on a loop device (FUSE); False where the machine
    cannot (not root, no mkfs.exfat): the scenario is left out."""
    tools = ("mkfs.exfat", "mount.exfat-fuse", "losetup", "truncate", "fusermount")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        yield False
        return
    folder.mkdir(parents=True)
    image = Path(tempfile.mkstemp(suffix=".img")[1])  # outside the tree compared
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.exfat", str(image)], capture_output=True, check=True)
    loop = subprocess.run(
        ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        subprocess.run(["mount.exfat-fuse", loop, str(folder)], check=True, capture_output=True)
        try:
            yield True
        finally:
            subprocess.run(["fusermount", "-u", str(folder)], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        image.unlink()


def run_scenario(
    code: Path, steps, work: Path, on_exfat: bool = False, codes: dict | None = None
) -> list[dict] | None:
    """The steps run by the version in `code`; a step (name, argv, "old" or "new") runs
    with codes[...] instead (CROSS)."""
    root = work / "sandbox"
    with exfat(root / "target") if on_exfat else contextlib.nullcontext(True) as ready:
        if not ready:
            return None
        make_archive(root)
        return _run_steps(code, steps, root, codes or {}, as_root=on_exfat)


@functools.cache
def takes_option(code: Path, command: str, option: str) -> bool:
    """Whether the version in `code` has `option` on `command` (its --help names it)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-m", "flowersort", command, "--help"],
        cwd=code,  # python -m looks in the working folder first
        env=env,
        capture_output=True,
        text=True,
    )
    return option in done.stdout


def _run_steps(default: Path, steps, root: Path, codes: dict, as_root: bool = False) -> list[dict]:
    """Each step's outcome. `as_root`: where a version has --run-as (a root run over files
    every user may change, as on exFAT, is refused without it), --run-as root, so that it
    writes with root's rights as versions before it did."""
    record = []
    for name, step, *which in steps:
        code = codes[which[0]] if which and codes else default
        env = {
            **os.environ,
            "PYTHONPATH": str(code),
            "XDG_STATE_HOME": str(root / "state"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "HOME": str(root),
        }
        env.pop("FLOWERSORT_MODEL", None)
        if callable(step):
            step(root)
            record.append({"step": name, "tree": tree(root)})
            continue
        argv = [sys.executable, "-m", "flowersort", *step, "--workers", "1"]
        if step[0] == "undo":
            argv = argv[:-2]
        if as_root and os.geteuid() == 0 and takes_option(code, step[0], "--run-as"):
            argv += ["--run-as", "root"]
        argv.append("--json")
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        for line in lines:
            line.pop("model", None)  # the model file's path: the version's own tree
        record.append(
            {
                "step": name,
                "exit": done.returncode,
                "json": normalise(json.dumps(lines, indent=1, sort_keys=True), root, code),
                "stderr": normalise(done.stderr, root, code),
                "tree": tree(root),
            }
        )
    return record


def compare(a: list[dict], b: list[dict]) -> list[tuple[str, str]]:
    """Each step's differences, as unified diffs (old -> new)."""
    diffs = []
    for x, y in zip(a, b):
        for key in ("exit", "json", "stderr", "tree"):
            old, new = x.get(key), y.get(key)
            if old == new:
                continue
            if isinstance(old, dict):
                old = "\n".join(f"{k} {v}" for k, v in old.items())
                new = "\n".join(f"{k} {v}" for k, v in new.items())
            lines = difflib.unified_diff(
                str(old).splitlines(), str(new).splitlines(), "old", "new", lineterm="", n=1
            )
            diffs.append((x["step"], f"{x['step']}: {key} differs:\n    " + "\n    ".join(lines)))
    return diffs


WOULD = {
    "would-move": "moved",
    "would-copy": "copied",
    "would-deduplicate": "deduplicated",
    "would-review": "review",
    "would-restore": "restored",
    "would-remove-copy": "removed-copy",
}


def dry_vs_real(steps, record: list[dict]) -> list[str]:
    """Where a dry run and the same command run for real, next, disagree (would-move vs
    moved, the names, the sidecars): what a dry run failed to foresee."""
    out = []
    for (name, argv), (_, nxt), dry, real in zip(steps, steps[1:], record, record[1:]):
        if callable(argv) or callable(nxt) or argv != [*nxt, "--dry-run"]:
            continue
        said = json.loads(dry["json"])
        for row in said:
            row["action"] = WOULD.get(row["action"], row["action"])
        done = json.loads(real["json"])
        if said != done:
            lines = difflib.unified_diff(
                json.dumps(said, indent=1).splitlines(),
                json.dumps(done, indent=1).splitlines(),
                "dry run",
                "real run",
                lineterm="",
                n=1,
            )
            out.append(f"{name}: the dry run says otherwise:\n    " + "\n    ".join(lines))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="tree of the version to compare against")
    parser.add_argument("new", type=Path, nargs="?", default=ROOT, help="tree of this version")
    parser.add_argument("--show", action="store_true", help="print each step's outcomes")
    parser.add_argument("--only", action="append", help="this scenario only (repeatable)")
    args = parser.parse_args()
    failures = 0
    for name, steps in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        results = []
        for code in (args.old, args.new):
            with tempfile.TemporaryDirectory(prefix="fs-diff-") as work:
                results.append(
                    run_scenario(code.resolve(), steps, Path(work), name.startswith("exfat"))
                )
        if None in results:
            print(f"{name}: left out (an exFAT target needs root, mkfs.exfat and FUSE)")
            continue
        diffs = compare(*results)
        unforeseen = [dry_vs_real(steps, record) for record in results]
        # a dry run that now says what the real run after it does, where the old one did
        # not, is the point of one plan path, not a difference
        foreseen = {
            step
            for (step, argv), (_, then) in zip(steps, steps[1:])
            if not callable(argv) and not callable(then) and argv == [*then, "--dry-run"]
        }
        foreseen -= {u.split(":")[0] for u in unforeseen[1]}
        accepted = [(step, d) for step, d in diffs if step in foreseen]
        wrong = [(step, d) for step, d in diffs if step not in foreseen]
        actions = sorted(
            {
                r["action"]
                for s in results[1]
                for r in json.loads(s.get("json", "[]"))
                if "action" in r
            }
        )
        print(
            f"{name}: {len(steps)} steps, actions {', '.join(actions)}: "
            f"{len({s for s, _ in wrong})} steps differ"
            + (
                f", {len({s for s, _ in accepted})} dry runs now as the real run"
                if accepted
                else ""
            )
            + f"; dry runs unlike the real run: old {len(unforeseen[0])}, new {len(unforeseen[1])}"
        )
        if args.show:
            for s in results[1]:
                print("  ", s["step"], s.get("exit"), s.get("json", "")[:2000])
            for _, d in accepted:
                print("  accepted: " + d)
            for u in unforeseen[0]:
                print("  old " + u)
        for _, d in wrong:
            print("  " + d)
        failures += bool(wrong) + bool(unforeseen[1])
    codes = {"old": args.old.resolve(), "new": args.new.resolve()}
    for name, steps in CROSS.items():
        if args.only and name not in args.only:
            continue
        results = []
        for mixed in (False, True):
            with tempfile.TemporaryDirectory(prefix="fs-diff-") as work:
                results.append(
                    run_scenario(codes["old"], steps, Path(work), codes=codes if mixed else None)
                )
        diffs = compare(*results)
        print(f"{name}: {len(steps)} steps, {len({s for s, _ in diffs})} differ from the old alone")
        for _, d in diffs:
            print("  " + d)
        failures += bool(diffs)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
