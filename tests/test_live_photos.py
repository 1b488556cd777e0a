"""Live Photos: a HEIC or JPEG still and the .MOV of the same stem (any case) are moved,
copied and undone as one group with the sidecars; a .MOV alone is never touched."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from flowersort.sorting.companions import sidecars
from tests.conftest import census, make_photo, run, write_photo
from tests.heif_files import heic_bytes, needs_pillow_heif


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


STILLS = [
    pytest.param(("IMG_0001.HEIC", "IMG_0001.MOV", "IMG_0001.AAE"), marks=needs_pillow_heif),
    pytest.param(("IMG_0001.JPG", "IMG_0001.mov")),
    pytest.param(("IMG_0001.jpeg", "IMG_0001.Mov", "IMG_0001.xmp")),
    # a renamer lower-cased the still only: still one group, on any disk
    pytest.param(("img_0001.jpg", "IMG_0001.MOV", "Img_0001.AAE"), id="stems-in-other-cases"),
]


def live_archive(root, group):
    """The Live Photo `group` (still first), a .MOV alone, and a PNG with a .MOV of its
    stem (a PNG is no Live Photo still)."""
    rng = np.random.default_rng(8)
    still, *others = group
    if still.lower().endswith(".heic"):
        root.mkdir(parents=True)
        (root / still).write_bytes(heic_bytes(make_photo(rng, True), 64))
    else:
        write_photo(root / still, make_photo(rng, True))
    for name in others:
        (root / name).write_bytes(f"the {name} of a live photo".encode())
    (root / "IMG_0002.MOV").write_bytes(b"a video on its own")
    write_photo(root / "IMG_0003.png", make_photo(rng, True))
    (root / "IMG_0003.MOV").write_bytes(b"a video next to a png")


def move(src, dest, *extra):
    return run("classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, *extra)


@pytest.mark.parametrize("group", STILLS)
def test_a_live_photo_moves_clashes_and_undoes_as_one_group(tmp_path, group):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    live_archive(src, group)
    dest.mkdir()
    (dest / group[0]).write_bytes(b"an older, unrelated photo of the same name")
    before, source_tree = census(src, dest), tree(src)

    result = move(src, dest)
    assert result.exit_code == 0, result.output
    stem = group[0].rsplit(".", 1)[0]
    arrived = [stem + " (1)" + name[len(stem) :] for name in group]  # all take the new name
    assert names(dest) == sorted([group[0], *arrived, "IMG_0003.png"])
    assert names(src) == ["IMG_0002.MOV", "IMG_0003.MOV"]  # never touched
    assert census(src, dest) == before
    assert "; 2 videos passed over" in result.stderr  # the still's .MOV is no lone video

    result = run("undo")
    assert result.exit_code == 0, result.output
    assert tree(src) == source_tree and names(dest) == [group[0]]
    assert census(src, dest) == before


@pytest.mark.parametrize("group", STILLS[1:])
def test_a_live_photo_is_copied_and_its_copies_undone_together(tmp_path, group):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    live_archive(src, group)
    source_tree = tree(src)
    result = run("classify", src, "--copy-to", dest, "--threshold", 0, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert names(dest) == sorted([*group, "IMG_0003.png"]) and tree(src) == source_tree
    assert run("undo").exit_code == 0
    assert not dest.exists() and tree(src) == source_tree


def test_undo_dry_run_of_a_copy_names_the_companions_it_would_remove(tmp_path):
    src, dest = tmp_path / "Pictures", tmp_path / "Flowers"
    live_archive(src, ("IMG_0001.JPG", "IMG_0001.MOV", "IMG_0001.AAE"))
    result = run("classify", src, "--copy-to", dest, "--threshold", 0, "--workers", 1)
    assert result.exit_code == 0, result.output
    before = tree(dest)
    plan = run("undo", "--dry-run")
    assert plan.exit_code == 0 and tree(dest) == before
    assert (
        f"would remove copy: {dest / 'IMG_0001.JPG'} -> {src / 'IMG_0001.JPG'} + .AAE, .MOV\n"
        in (plan.stdout)
    )
    done = run("undo")
    assert f"removed copy: {dest / 'IMG_0001.JPG'} -> {src / 'IMG_0001.JPG'} + .AAE, .MOV\n" in (
        done.stdout
    )


@pytest.fixture
def exfat(tmp_path):
    """A case-insensitive filesystem: exFAT through FUSE on a loop device (root only)."""
    tools = ("mkfs.exfat", "mount.exfat-fuse", "losetup")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        pytest.skip("needs root, mkfs.exfat and mount.exfat-fuse")
    image, mnt = tmp_path / "exfat.img", tmp_path / "mnt"
    subprocess.run(["truncate", "-s", "8M", image], check=True)
    subprocess.run(["mkfs.exfat", image], check=True, capture_output=True)
    mnt.mkdir()
    loop = subprocess.run(
        ["losetup", "-f", "--show", image], capture_output=True, text=True
    ).stdout.strip()
    if not loop or subprocess.run(["mount.exfat-fuse", loop, mnt]).returncode:
        if loop:
            subprocess.run(["losetup", "-d", loop])
        pytest.skip("cannot mount exFAT here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=True)
        subprocess.run(["losetup", "-d", loop], check=True)


def test_on_a_case_insensitive_disk_each_companion_is_found_once_by_its_own_name(exfat):
    write_photo(exfat / "IMG_0001.JPG", make_photo(np.random.default_rng(9), True))
    for name in ("IMG_0001.MOV", "IMG_0001.aae"):
        (exfat / name).write_bytes(name.encode())
    assert (exfat / "IMG_0001.mov").is_file()  # every spelling finds it here
    assert [p.name for p in sidecars(exfat / "IMG_0001.JPG")] == ["IMG_0001.MOV", "IMG_0001.aae"]


def test_the_motion_of_a_followed_linked_still_moves_with_it_and_is_not_passed_over(tmp_path):
    """With --follow-symlinks a linked still is classified and moved with its .MOV, so that
    .MOV is no lone video (it was counted as passed over as well as moved)."""
    src, dest, elsewhere = tmp_path / "Pictures", tmp_path / "Flowers", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_photo(elsewhere / "IMG_0001.JPG", make_photo(np.random.default_rng(8), True))
    src.mkdir()
    (src / "IMG_0001.JPG").symlink_to(elsewhere / "IMG_0001.JPG")
    (src / "IMG_0001.MOV").write_bytes(b"the motion of a linked still")
    (src / "IMG_0002.MOV").write_bytes(b"a video on its own")
    result = move(src, dest, "--follow-symlinks")
    assert result.exit_code == 0, result.output
    assert "IMG_0001.MOV" in names(dest) and names(src) == ["IMG_0002.MOV"]
    assert "; 1 video passed over" in result.stderr
