"""Learning from the user: vetoes, confirmations, the review band, corrections in train."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from flowersort.cli import cli
from flowersort.corrections import Store, store_path
from tests.conftest import census, make_photo, write_photo


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def outcomes(result) -> dict[str, dict]:
    """--json lines by the photo's file name."""
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {os.path.basename(r["path"]): r for r in rows}


@pytest.fixture
def archive(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "Pictures"
    for i in range(4):
        write_photo(root / "2024" / f"IMG_{i:04d}.jpg", make_photo(rng, True))
    return root


def nightly(archive, dest, *extra):
    """Everything is a flower at threshold 0: what stays behind stays by the user's choice."""
    return run(
        "classify", archive, "--move-to", dest, "--threshold", 0, "--json", "--workers", 1, *extra
    )


def take_out(dest, name, to):
    """The user moves a photo out of DEST by hand (any name, any folder)."""
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(dest / name, to)


def test_a_photo_taken_out_is_never_moved_again_by_content(archive, tmp_path):
    dest = tmp_path / "Flowers"
    first = outcomes(nightly(archive, dest))
    assert {r["action"] for r in first.values()} == {"moved"}
    kitten = archive / "pets" / "kitten.jpg"  # another folder, another name
    take_out(dest, "IMG_0001.jpg", kitten)
    second = nightly(archive, dest)
    assert outcomes(second)["kitten.jpg"]["action"] == "vetoed"
    assert "1 kept by your earlier choice" in second.stderr
    assert kitten.exists() and not (dest / "IMG_0001.jpg").exists()
    # the user renames and moves it again; later nights still leave it alone
    renamed = archive / "misc" / "cat on the sofa.jpg"
    renamed.parent.mkdir()
    os.rename(kitten, renamed)
    for _ in range(2):
        assert outcomes(nightly(archive, dest))["cat on the sofa.jpg"]["action"] == "vetoed"
        assert renamed.exists()
    rows = run("corrections", "list", "--json")
    (veto,) = [json.loads(line) for line in rows.output.splitlines()]
    assert veto["label"] == "not-flower" and veto["kind"] == "taken-out"
    assert veto["path"] == str(renamed)  # where it was seen last


def test_a_photo_moved_back_from_another_disk_copy_is_still_known(archive, tmp_path):
    """Content, not inode: a byte-identical copy (archive moved to another disk) is held."""
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    take_out(dest, "IMG_0002.jpg", archive / "IMG_0002.jpg")
    nightly(archive, dest)
    moved = tmp_path / "NewDisk" / "Pictures"
    shutil.copytree(archive, moved)  # new inodes, same bytes
    shutil.rmtree(archive)
    result = outcomes(nightly(moved, tmp_path / "NewDisk" / "Flowers"))
    assert result["IMG_0002.jpg"]["action"] == "vetoed"


def test_forget_lets_it_move_again(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    take_out(dest, "IMG_0003.jpg", archive / "back.jpg")
    nightly(archive, dest)
    forgot = run("corrections", "forget", archive / "back.jpg")
    assert forgot.exit_code == 0 and forgot.output.startswith("forgot: not-flower:")
    assert outcomes(nightly(archive, dest))["back.jpg"]["action"] == "moved"
    missing = run("corrections", "forget", "0123456789abcdef")
    assert (
        missing.exit_code == 2 and missing.output == "Error: no correction for 0123456789abcdef\n"
    )


def test_undo_is_not_a_veto(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    assert run("undo").exit_code == 0
    again = outcomes(nightly(archive, dest))
    assert {r["action"] for r in again.values()} == {"moved"}
    assert Store().corrections() == []


def test_dry_runs_record_nothing(archive, tmp_path):
    dest = tmp_path / "Flowers"
    plan = outcomes(nightly(archive, dest, "--dry-run"))
    assert {r["action"] for r in plan.values()} == {"would-move"}
    assert not store_path().exists()  # not even created
    nightly(archive, dest)
    take_out(dest, "IMG_0000.jpg", archive / "IMG_0000.jpg")
    write_photo(dest / "by hand.jpg", make_photo(np.random.default_rng(9), True))
    before = store_path().read_bytes(), sorted(p.name for p in store_path().parent.iterdir())
    for _ in range(2):  # a dry run sees the veto, but leaves it for the real run to record
        plan = outcomes(nightly(archive, dest, "--dry-run"))
        assert plan["IMG_0000.jpg"]["action"] == "vetoed"
    after = store_path().read_bytes(), sorted(p.name for p in store_path().parent.iterdir())
    assert after == before
    assert outcomes(nightly(archive, dest))["IMG_0000.jpg"]["action"] == "vetoed"
    kinds = sorted((c.label, c.kind) for c in Store().corrections())
    assert kinds == [("flower", "added"), ("not-flower", "taken-out")]


def test_photos_put_into_dest_by_hand_are_confirmations(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    os.rename(dest / "IMG_0001.jpg", dest / "renamed by the user.jpg")  # still flowersort's
    rng = np.random.default_rng(11)
    write_photo(dest / "old" / "rose.jpg", make_photo(rng, True))
    before = census(archive, dest)
    nightly(archive, dest)
    assert census(archive, dest) == before
    (confirmed,) = Store().corrections()
    assert confirmed.label == "flower" and confirmed.kind == "added"
    assert confirmed.path == dest / "old" / "rose.jpg"
    nightly(archive, dest)  # seen again: nothing new
    assert len(Store().corrections()) == 1
