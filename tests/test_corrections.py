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


def scores(archive) -> dict[str, float]:
    listing = run("classify", archive, "--json", "--workers", 1)
    return {name: r["score"] for name, r in outcomes(listing).items()}


def band_around_middle(archive) -> tuple[list[str], list[str]]:
    """Threshold and band options that put the two middle photos of four in the band."""
    ranked = sorted(scores(archive).items(), key=lambda kv: kv[1])
    (low, s1), (mid_low, s2), (mid_high, s3), (high, s4) = ranked
    assert s1 < s2 < s3 < s4
    threshold, band = (s2 + s3) / 2, (s3 - s2) / 2 + 1e-5  # --json rounds to 6 digits
    assert min(threshold - s1, s4 - threshold) > band + 1e-5
    return [low, mid_low, mid_high, high], ["--threshold", threshold, "--review-band", band]


@pytest.fixture
def mixed(tmp_path):
    rng = np.random.default_rng(8)
    root = tmp_path / "Pictures"
    for i in range(4):
        write_photo(root / f"IMG_{i:04d}.jpg", make_photo(rng, i % 2 == 0))
    return root


def test_borderline_photos_go_to_review_and_the_users_sorting_is_learnt(mixed, tmp_path):
    dest, review = tmp_path / "Flowers", tmp_path / "Flowers" / "Review"
    (low, mid_low, mid_high, high), opts = band_around_middle(mixed)
    cron = ("classify", mixed, "--move-to", dest, "--review-to", review, "--json", *opts)
    first = outcomes(run(*cron))
    assert first[low]["action"] == "kept" and first[high]["action"] == "moved"
    assert first[mid_low]["action"] == first[mid_high]["action"] == "review"
    assert sorted(p.name for p in review.iterdir()) == sorted([mid_low, mid_high])
    # the user sorts Review/: one into Flowers/ (a flower), one back into the archive (not)
    os.rename(review / mid_high, dest / "keeper.jpg")
    os.rename(review / mid_low, mixed / "not a flower.jpg")
    for _ in range(2):
        again = outcomes(run(*cron))
        assert again["not a flower.jpg"]["action"] == "vetoed"
        assert (mixed / "not a flower.jpg").exists() and list(review.iterdir()) == []
    learnt = sorted((c.path.name, c.label, c.kind) for c in Store().corrections())
    assert learnt == [
        ("keeper.jpg", "flower", "review-in"),
        ("not a flower.jpg", "not-flower", "review-out"),
    ]


def test_without_review_folder_borderline_photos_stay(mixed, tmp_path):
    dest = tmp_path / "Flowers"
    (low, mid_low, mid_high, high), opts = band_around_middle(mixed)
    result = run("classify", mixed, "--move-to", dest, *opts)
    assert result.exit_code == 0, result.output
    assert f"borderline, left for you: {mixed / mid_high}" in result.output
    assert sorted(p.name for p in mixed.iterdir()) == sorted([low, mid_low, mid_high])
    assert "2 borderline" in result.stderr
    with_json = outcomes(run("classify", mixed, "--move-to", dest, "--json", *opts))
    assert with_json[mid_low]["action"] == with_json[mid_high]["action"] == "borderline"


def test_the_band_is_a_model_setting(mixed, tmp_path):
    from flowersort.model import default_model_path, load_model

    model = load_model(default_model_path())
    model.summary["review_band"] = 1.0  # every score is borderline
    model.save(tmp_path / "wide.npz")
    dest = tmp_path / "Flowers"
    wide = outcomes(
        run("classify", mixed, "--move-to", dest, "--json", "--model", tmp_path / "wide.npz")
    )
    assert {r["action"] for r in wide.values()} == {"borderline"}
    model.summary["review_band"] = 0.0
    model.save(tmp_path / "none.npz")
    none = outcomes(
        run("classify", mixed, "--move-to", dest, "--json", "--model", tmp_path / "none.npz")
    )
    assert "borderline" not in {r["action"] for r in none.values()}


def train_json(examples, model, *extra):
    result = run(
        "train", *examples, "--model", model, "--epochs", 2, "--members", 1,
        "--image-size", 48, "--grid", 4, "--crops", 1, "--json", "--workers", 1, *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1]), result


def test_train_with_corrections_adds_the_users_examples(examples, archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    take_out(dest, "IMG_0000.jpg", archive / "no" / "a.jpg")
    take_out(dest, "IMG_0001.jpg", archive / "no" / "b.jpg")
    take_out(dest, "IMG_0002.jpg", archive / "gone.jpg")
    write_photo(dest / "mine.jpg", make_photo(np.random.default_rng(2), True))
    nightly(archive, dest)
    (archive / "gone.jpg").unlink()  # a vetoed photo the user deleted since
    summary, result = train_json(examples, tmp_path / "m.npz", "--with-corrections")
    assert summary["corrections"] == {"flowers": 1, "noflowers": 2}
    assert summary["examples"] == {"flowers": 31, "noflowers": 32}
    assert f"skipped: {archive / 'gone.jpg'}: a correction, but the photo is no longer" in (
        result.stderr
    )
    plain, _ = train_json(examples, tmp_path / "plain.npz")
    assert plain["examples"] == {"flowers": 30, "noflowers": 30} and "corrections" not in plain


def test_a_correction_relabels_a_photo_of_the_example_folders(examples, tmp_path):
    from flowersort.corrections import Example, with_corrections
    from flowersort.images import FeatureConfig
    from flowersort.train import load_examples

    cfg = FeatureConfig(image_size=48, grid=4, bins=12)
    flowers, noflowers = examples
    ex = load_examples(flowers, noflowers, cfg, workers=1, copies=1)
    extra = tmp_path / "extra.jpg"
    write_photo(extra, make_photo(np.random.default_rng(1), False))
    fixes = [Example(flowers / "fl_003.jpg", "not-flower", "test"), Example(extra, "flower", "t")]
    out = with_corrections(ex, fixes, cfg, lambda *a: None, workers=1, copies=1)
    assert out.y[ex.paths.index(str(flowers / "fl_003.jpg"))] == 0.0
    assert out.paths[-1] == str(extra) and out.y[-1] == 1.0 and len(out.y) == 61
    assert out.x.shape[0] == out.augmented.shape[0] == 61
