"""Learning from the user: vetoes, confirmations, the review band, corrections in train."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from flowersort.sorting.corrections import Store, store_path
from flowersort.sorting.marks import training_examples
from flowersort.sorting.state import state_dir
from tests.conftest import census, make_photo, run, write_photo


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
    """Four photos whose scores under the shipped model are far enough apart for a band
    around the middle two. They are picked from blends of a flower and another photo, not
    assumed: which photos score where depends on the shipped model."""
    rng = np.random.default_rng(8)
    root = tmp_path / "Pictures"
    flower, other = make_photo(rng, True), make_photo(rng, False)
    for i, share in enumerate(np.linspace(0, 1, 11)):
        blend = cv2.addWeighted(flower, share, other, 1 - share, 0)
        write_photo(root / f"IMG_{i:04d}.jpg", blend)
    ranked = sorted(scores(root).items(), key=lambda kv: kv[1])
    gap = 1e-3  # well above --json's 6 digits
    pairs = [
        i
        for i in range(1, len(ranked) - 2)
        if ranked[i][1] - ranked[0][1] > gap
        and ranked[-1][1] - ranked[i + 1][1] > gap
        and ranked[i + 1][1] - ranked[i][1] > gap / 10
    ]
    assert pairs, f"no four photos with scores apart: {ranked}"
    i = pairs[len(pairs) // 2]
    keep = {ranked[0][0], ranked[i][0], ranked[i + 1][0], ranked[-1][0]}
    for name, _ in ranked:
        if name not in keep:
            (root / name).unlink()
    return root


def test_borderline_photos_go_to_review_and_the_users_sorting_is_learnt(mixed, tmp_path):
    dest, review = tmp_path / "Flowers", tmp_path / "Flowers" / "Review"
    (low, mid_low, mid_high, high), opts = band_around_middle(mixed)
    cron = ("classify", mixed, "--move-to", dest, "--review-to", review, "--json", *opts)
    plan = outcomes(run(*cron, "--dry-run"))
    assert plan[mid_low]["action"] == plan[mid_high]["action"] == "would-review"
    assert not dest.exists()
    first = outcomes(run(*cron))
    assert first[low]["action"] == "kept" and first[high]["action"] == "moved"
    assert first[mid_low]["action"] == first[mid_high]["action"] == "review"
    assert (first[mid_low]["flower"], first[mid_high]["flower"]) == (False, True)
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
    from flowersort.model.file import default_model_path, load_model

    model = load_model(default_model_path())
    dest = tmp_path / "Flowers"
    (low, mid_low, mid_high, high), _ = band_around_middle(mixed)
    plan = outcomes(run("classify", mixed, "--json"))  # no target: nothing moves
    # a threshold at a photo's score, between the others: not one rounded to 1e-06, where
    # the narrowed band (5e-07) is no wider than --json's rounding
    model.threshold = plan[mid_high]["score"]
    model.summary["review_band"] = 1.0  # narrowed to half the room to the nearer end
    model.save(tmp_path / "wide.npz")
    wide = outcomes(
        run("classify", mixed, "--move-to", dest, "--json", "--model", tmp_path / "wide.npz")
    )
    band = min(1.0, model.threshold / 2, (1 - model.threshold) / 2)
    near = {name for name, r in plan.items() if abs(r["score"] - model.threshold) < band}
    assert mid_high in near and len(near) < 4  # the band is narrowed, and holds a photo
    assert {name for name, r in wide.items() if r["action"] == "borderline"} == near
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
    from flowersort.model.features import FeatureConfig
    from flowersort.sorting.marks import Example
    from flowersort.training.examples import load_examples
    from flowersort.training.learn import with_corrections

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


def marks_from_page(page: str, marked: set[str], tmp_path) -> str:
    """Run the report's own marks code (the part without the DOM) in node, with the cards
    whose file names are in `marked` clicked."""
    from tests.report_page import data_of

    rows = data_of(page)
    for r in rows:
        r["marked"] = os.path.basename(r["path"]) in marked
    script = page[page.index("// --- marks") : page.index("// --- end marks")]
    js = tmp_path / "marks.js"
    js.write_text(f"const DATA = {json.dumps(rows)};\n{script}\n"
                  "process.stdout.write(marksJson(DATA, 'test'));\n")  # fmt: skip
    return subprocess.run(
        ["node", str(js)], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_report_marks_round_trip_into_train(examples, trained_model, tmp_path):
    from tests.conftest import make_archive

    archive = make_archive(tmp_path / "Pictures", 8, seed=4)
    dest, report = tmp_path / "Flowers", tmp_path / "report.html"
    result = outcomes(
        run("classify", archive, "--move-to", dest, "--report", report, "--json",
            "--model", trained_model, "--workers", 1)
    )  # fmt: skip
    moved = next(n for n, r in result.items() if r["action"] == "moved")
    kept = next(n for n, r in result.items() if r["action"] == "kept")
    text = marks_from_page(report.read_text(), {moved, kept}, tmp_path)
    doc = json.loads(text)
    assert doc["format"] == "flowersort-marks" and len(doc["marks"]) == 2
    by_label = {m["label"]: m for m in doc["marks"]}
    assert by_label["not-flower"]["path"] == result[moved]["detail"]  # where it is now
    assert by_label["flower"]["path"] == str(archive / kept)
    (tmp_path / "marks.json").write_text(text)
    summary, _ = train_json(examples, tmp_path / "m.npz", "--marks", tmp_path / "marks.json")
    assert summary["corrections"] == {"flowers": 1, "noflowers": 1}
    assert summary["examples"] == {"flowers": 31, "noflowers": 31}
    kept_as = sorted((c.path, c.label, c.kind) for c in Store().corrections())
    assert kept_as == sorted(
        [(dest / moved, "not-flower", "mark"), (archive / kept, "flower", "mark")]
    )


def test_a_file_that_is_not_a_marks_file_is_exit_2(examples, tmp_path):
    bad = tmp_path / "marks.json"
    bad.write_text('{"marks": []}')
    result = run("train", *examples, "--model", tmp_path / "m.npz", "--marks", bad)
    assert result.exit_code == 2
    assert result.output == f"Error: {bad} is not a marks file saved from a flowersort report\n"


def test_moves_from_before_corrections_existed_are_not_confirmations(archive, tmp_path):
    """An upgrade: the journal knows what flowersort moved before `placed` was kept."""
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    store = Store()
    store.db.execute("DELETE FROM placed")
    store.close()
    nightly(archive, dest)
    assert Store().corrections() == []
    take_out(dest, "IMG_0002.jpg", archive / "x.jpg")  # and they can be vetoed
    assert outcomes(nightly(archive, dest))["x.jpg"]["action"] == "vetoed"


@pytest.mark.parametrize("index", [True, False], ids=["indexed", "journal-without-index"])
def test_a_dry_run_finds_moves_from_before_corrections_existed_by_the_journal(
    archive, tmp_path, index
):
    """The journal is asked by its index of finals; one written before that index (a dry
    run does not add it) is read whole: either way, flowersort's moves are not yours."""
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    store = Store()
    store.db.execute("DELETE FROM placed")
    store.close()
    if not index:
        db = sqlite3.connect(state_dir() / "journal.sqlite")
        db.execute("DROP INDEX moves_first_final")
        db.close()
    plan = nightly(archive, dest, "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "by you" not in plan.output


def test_photos_left_in_dest_are_weak_confirmations_listed_not_learnt(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    store = Store()
    store.db.execute(
        "UPDATE placed SET placed = placed - 15 * 86400 WHERE CAST(path AS TEXT) LIKE '%0001%'"
    )
    store.close()
    listing = run("corrections", "list")
    assert listing.output.endswith(
        "0 corrections: 0 not flowers, 0 flowers; 1 photo moved by flowersort left in the "
        "target for 14 days or more\n"
    )


def test_a_damaged_store_is_one_line_and_exit_2(archive, tmp_path):
    store_path().parent.mkdir(parents=True)
    store_path().write_bytes(b"not a database" * 100)
    for dry in ((), ("--dry-run",)):
        result = nightly(archive, tmp_path / "Flowers", *dry)
        assert result.exit_code == 2
        assert result.output.startswith(f"Error: corrections file {store_path()} is damaged")
        assert result.output.count("\n") == 1
    assert len(list(archive.rglob("*.jpg"))) == 4  # nothing moved


def test_review_to_needs_its_own_folder_and_a_target(archive, tmp_path):
    alone = run("classify", archive, "--review-to", tmp_path / "R")
    assert alone.exit_code == 2 and "--review-to needs --move-to or --copy-to" in alone.output
    same = run("classify", archive, "--move-to", tmp_path / "F", "--review-to", tmp_path / "F")
    assert same.exit_code == 2 and "another folder than the target" in same.output


def test_a_photo_marked_not_a_flower_is_held_by_later_runs(examples, archive, tmp_path):
    marks = tmp_path / "marks.json"
    photo = archive / "2024" / "IMG_0003.jpg"
    mark = {"path": str(photo), "size": photo.stat().st_size, "label": "not-flower"}
    marks.write_text(json.dumps({"format": "flowersort-marks", "version": 1, "marks": [mark]}))
    train_json(examples, tmp_path / "m.npz", "--marks", marks)
    result = outcomes(nightly(archive, tmp_path / "Flowers"))
    assert result["IMG_0003.jpg"]["action"] == "vetoed" and photo.exists()
    assert {r["action"] for n, r in result.items() if n != "IMG_0003.jpg"} == {"moved"}


def test_undoing_a_review_run_is_no_choice(mixed, tmp_path):
    dest, review = tmp_path / "Flowers", tmp_path / "Flowers" / "Review"
    _, opts = band_around_middle(mixed)
    cron = ("classify", mixed, "--move-to", dest, "--review-to", review, "--json", *opts)
    first = outcomes(run(*cron))
    assert run("undo").exit_code == 0
    assert not review.exists() and len(list(mixed.iterdir())) == 4  # its folders go too
    again = outcomes(run(*cron))
    assert {n: r["action"] for n, r in again.items()} == {n: r["action"] for n, r in first.items()}
    assert Store().corrections() == []


def test_an_undo_stopped_half_way_is_no_veto(archive, tmp_path):
    """Ctrl-C during undo, then the nightly run: the photos already put back move again."""
    from flowersort.sorting.undo import undo

    dest = tmp_path / "Flowers"
    outcomes(nightly(archive, dest))
    assert len(list(dest.glob("*.jpg"))) == 4
    calls = iter([False, False, True])  # the undo stops before its third photo
    back = [o for o in undo(stop=lambda: next(calls, True)) if o.action == "restored"]
    assert len(back) == 2 and len(list(dest.glob("*.jpg"))) == 2
    again = outcomes(nightly(archive, dest))
    assert sorted(r["action"] for r in again.values()) == ["moved", "moved"]
    assert Store().corrections() == []


def test_a_photo_deleted_from_dest_is_no_veto_for_a_twin_imported_later(archive, tmp_path):
    """Deleted is not taken out: the night after, it was nowhere in the archive, so the same
    bytes imported again later (the camera card read twice) are a new photo, not a veto."""
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    same_bytes = (dest / "IMG_0001.jpg").read_bytes()
    (dest / "IMG_0001.jpg").unlink()
    second = nightly(archive, dest)
    assert "kept by your earlier choice" not in second.stderr
    (archive / "import").mkdir()
    (archive / "import" / "IMG_0001.jpg").write_bytes(same_bytes)
    third = outcomes(nightly(archive, dest))
    assert third["IMG_0001.jpg"]["action"] == "moved"
    assert (dest / "IMG_0001.jpg").read_bytes() == same_bytes
    assert Store().corrections() == []


def test_the_whole_archive_moved_to_another_disk_keeps_flowersorts_photos_its_own(
    archive, tmp_path
):
    """Flowers/ and Flowers/Review inside the archive, all copied to a new disk: what
    flowersort put there is still its own (no "added by hand" flowers to learn from), and
    taking one out of the new Review/ is a veto."""
    dest, review = archive / "Flowers", archive / "Flowers" / "Review"
    later = tmp_path / "later"
    later.mkdir()
    for name in ("IMG_0002.jpg", "IMG_0003.jpg"):
        os.rename(archive / "2024" / name, later / name)
    nightly(archive, dest, "--review-to", review, "--threshold", 0.5, "--review-band", 1)
    for name in ("IMG_0002.jpg", "IMG_0003.jpg"):
        os.rename(later / name, archive / "2024" / name)
    nightly(archive, dest, "--review-to", review)
    assert sorted(p.name for p in review.iterdir()) == ["IMG_0000.jpg", "IMG_0001.jpg"]
    assert sorted(p.name for p in dest.glob("*.jpg")) == ["IMG_0002.jpg", "IMG_0003.jpg"]
    moved = tmp_path / "NewDisk" / "Pictures"
    shutil.copytree(archive, moved)  # new inodes, same bytes
    shutil.rmtree(archive)
    new_dest, new_review = moved / "Flowers", moved / "Flowers" / "Review"
    nightly(moved, new_dest, "--review-to", new_review)
    assert Store().corrections() == []
    os.rename(new_review / "IMG_0000.jpg", moved / "2024" / "not a flower.jpg")
    result = outcomes(nightly(moved, new_dest, "--review-to", new_review))
    assert result["not a flower.jpg"]["action"] == "vetoed"
    assert [(c.label, c.kind) for c in Store().corrections()] == [("not-flower", "review-out")]


def test_a_photo_edited_in_dest_then_taken_out_is_a_veto(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    write_photo(dest / "IMG_0001.jpg", make_photo(np.random.default_rng(5), True))  # edited
    nightly(archive, dest)  # the edit is seen while the photo is still in DEST
    take_out(dest, "IMG_0001.jpg", archive / "edited.jpg")
    result = outcomes(nightly(archive, dest))
    assert result["edited.jpg"]["action"] == "vetoed"
    assert (archive / "edited.jpg").exists() and not (dest / "edited.jpg").exists()


def test_a_veto_found_by_a_run_given_relative_folders_is_kept_with_its_full_path(
    archive, tmp_path, monkeypatch
):
    """train --with-corrections runs from another folder (cron: $HOME) and must find it."""
    monkeypatch.chdir(tmp_path)
    nightly("Pictures", "Flowers")
    take_out(tmp_path / "Flowers", "IMG_0002.jpg", archive / "back.jpg")
    assert outcomes(nightly("Pictures", "Flowers"))["back.jpg"]["action"] == "vetoed"
    (veto,) = Store().corrections()
    assert veto.path == archive / "back.jpg"
    os.rename(archive / "back.jpg", archive / "2024" / "again.jpg")
    assert outcomes(nightly("Pictures", "Flowers"))["again.jpg"]["action"] == "vetoed"
    (veto,) = Store().corrections()
    assert veto.path == archive / "2024" / "again.jpg"


def test_report_marks_name_photos_by_full_path_when_classify_was_given_relative_ones(
    archive, tmp_path, monkeypatch
):
    """The saved marks are read by train, often from another folder than the report's."""
    from tests.report_page import data_of

    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report.html"
    assert run("classify", "Pictures", "--move-to", "Flowers", "--threshold", 0,
               "--report", report, "--workers", 1).exit_code == 0  # fmt: skip
    files = sorted(r["file"] for r in data_of(report.read_text()))
    assert files == sorted(str(tmp_path / "Flowers" / f"IMG_{i:04d}.jpg") for i in range(4))


def test_marks_naming_a_folder_or_a_fifo_are_skipped(examples, tmp_path):
    """Not a crash (a folder) nor a train that waits forever (a FIFO, opened to be hashed)."""
    folder, fifo = tmp_path / "a folder.jpg", tmp_path / "fifo.jpg"
    folder.mkdir()
    os.mkfifo(fifo)
    marks = tmp_path / "marks.json"
    both = [{"path": str(folder), "label": "flower"}, {"path": str(fifo), "label": "flower"}]
    marks.write_text(json.dumps({"format": "flowersort-marks", "marks": both}))
    proc = subprocess.run(
        [sys.executable, "-m", "flowersort", "train", *map(str, examples), "--model",
         str(tmp_path / "m.npz"), "--epochs", "2", "--members", "1", "--image-size", "48",
         "--grid", "4", "--crops", "1", "--workers", "1", "--marks", str(marks)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"skipped: {folder}: marked in" in proc.stderr
    assert f"skipped: {fifo}: marked in" in proc.stderr


def test_a_photo_put_into_dest_by_hand_and_taken_out_again_stays_out(archive, tmp_path):
    """The newest choice wins: put in by hand (a flower), then taken back out (not one)."""
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    write_photo(dest / "mine.jpg", make_photo(np.random.default_rng(11), True))
    nightly(archive, dest)
    os.rename(dest / "mine.jpg", dest / "renamed.jpg")  # moved inside DEST: still in
    nightly(archive, dest)
    assert [(c.label, c.path) for c in Store().corrections()] == [("flower", dest / "renamed.jpg")]
    take_out(dest, "renamed.jpg", archive / "changed my mind.jpg")
    result = outcomes(nightly(archive, dest))
    assert result["changed my mind.jpg"]["action"] == "vetoed"
    assert (archive / "changed my mind.jpg").exists() and not (
        dest / "changed my mind.jpg"
    ).exists()
    assert [(c.label, c.kind) for c in Store().corrections()] == [("not-flower", "taken-out")]


def test_with_copies_a_review_photo_sorted_into_dest_is_not_sent_to_review_again(mixed, tmp_path):
    """--copy-to leaves the original in the archive: the next night must not copy it into
    Review/ again for the user to sort a second time (nor the one deleted from Review/)."""
    dest, review = tmp_path / "Flowers", tmp_path / "Flowers" / "Review"
    (low, mid_low, mid_high, high), opts = band_around_middle(mixed)
    cron = ("classify", mixed, "--copy-to", dest, "--review-to", review, "--json", *opts)
    first = outcomes(run(*cron))
    assert first[mid_low]["action"] == first[mid_high]["action"] == "review"
    os.rename(review / mid_high, dest / mid_high)  # a flower
    os.unlink(review / mid_low)  # not one: with copies, back means delete
    before = census(mixed, dest)
    for _ in range(2):
        again = outcomes(run(*cron))
        assert again[mid_low]["action"] == "vetoed"
        assert again[mid_high]["action"] != "review"
        assert list(review.iterdir()) == [] and census(mixed, dest) == before


def test_a_run_stopped_before_it_met_a_photo_taken_out_forgets_nothing(archive, tmp_path):
    """Only a complete walk may conclude that a photo gone from DEST was deleted."""
    from flowersort.model.file import default_model_path, load_model
    from flowersort.sorting.sorter import classify

    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    take_out(dest, "IMG_0001.jpg", archive / "zz" / "back.jpg")
    model = load_model(default_model_path())
    # a signal before the first photo was handled
    assert list(classify(model, archive, dest, threshold=0, stop=lambda: True)) == []
    assert outcomes(nightly(archive, dest))["back.jpg"]["action"] == "vetoed"


def test_report_marks_find_a_photo_whose_name_is_not_utf8(archive, tmp_path):
    """The page keeps the name's bytes (as JSON surrogate escapes) for train --marks."""
    from tests.report_page import data_of

    odd = os.fsencode(archive / "2024") + b"/caf\xe9 \xff.jpg"
    os.rename(archive / "2024" / "IMG_0000.jpg", odd)
    report = tmp_path / "report.html"
    assert run("classify", archive, "--report", report, "--workers", 1).exit_code == 0
    (row,) = [r for r in data_of(report.read_text()) if "caf" in r["file"]]
    assert os.fsencode(row["file"]) == odd
    marks = tmp_path / "marks.json"  # as the page's JSON.stringify writes it: \udcff escapes
    mark = {"path": row["file"], "size": row["size"], "label": "flower"}
    marks.write_text(json.dumps({"format": "flowersort-marks", "marks": [mark]}))
    skipped = []
    (found,) = training_examples(Store(), [marks], lambda p, why: skipped.append(p))
    assert os.fsencode(found.path) == odd and skipped == []


def test_with_copies_a_review_photo_sorted_into_dest_under_a_new_name_is_not_copied_again(
    mixed, tmp_path
):
    """The user sorts a borderline copy from Review/ into DEST and renames it: its original,
    still in the archive and scored above the threshold, must not be copied into DEST a
    second time (a duplicate in the album every photo the user confirmed)."""
    dest, review = tmp_path / "Flowers", tmp_path / "Flowers" / "Review"
    (low, mid_low, mid_high, high), opts = band_around_middle(mixed)
    cron = ("classify", mixed, "--copy-to", dest, "--review-to", review, "--json", *opts)
    first = outcomes(run(*cron))
    assert first[mid_high]["action"] == "review" and first[mid_high]["flower"] is True
    os.rename(review / mid_high, dest / f"garden {mid_high}")  # a flower, named by the user
    before = census(mixed, dest)
    for _ in range(2):
        again = outcomes(run(*cron))
        assert again[mid_high]["action"] == "kept"
        assert census(mixed, dest) == before


@pytest.mark.parametrize("inside", [False, True], ids=["elsewhere", "album-inside-the-archive"])
def test_photos_in_a_target_before_our_first_run_are_nobodys_choice(archive, tmp_path, inside):
    """Desktop holding 3 photos of dogs, or an album inside the archive: not flowers."""
    dest = archive / "Holiday" if inside else tmp_path / "Desktop"
    rng = np.random.default_rng(21)
    for i in range(3):
        write_photo(dest / f"dog {i}.jpg", make_photo(rng, False))
    first = nightly(archive, dest, "--quiet")
    assert Store().corrections() == []
    said = [line for line in first.stderr.splitlines() if "did not put there" in line]
    assert said == [
        f"the target {dest} already holds 3 photos that flowersort did not put there: left "
        "there, and not taken as flowers you chose (photos you put there from now on are)"
    ]
    write_photo(dest / "rose.jpg", make_photo(rng, True))  # put there after our run: yours
    second = nightly(archive, dest, "--quiet")
    assert "did not put there" not in second.stderr
    assert [(c.label, c.kind, c.path.name) for c in Store().corrections()] == [
        ("flower", "added", "rose.jpg")
    ]
    assert all((dest / f"dog {i}.jpg").exists() for i in range(3))
    assert run("corrections", "list").stdout.endswith(
        "\n1 correction: 0 not flowers, 1 flower; 0 photos moved by flowersort left in the "
        "target for 14 days or more\n"
    )


@pytest.mark.parametrize("earlier", ["shared-review-folder", "a-folder-inside-it"])
def test_a_first_run_into_a_target_is_first_whatever_other_targets_hold(archive, tmp_path, earlier):
    """Photos flowersort put into another target (its folder below this one, or the review
    folder shared with it) do not make this target's photos the user's choice: a Desktop of
    dogs given as the target after runs into Desktop/Flowers, or after runs into another
    target with the same --review-to, were taken as flowers."""
    desktop, review = tmp_path / "Desktop", tmp_path / "Review"
    rng = np.random.default_rng(24)
    if earlier == "shared-review-folder":
        first = ("--review-to", review, "--review-band", 0.99)  # everything for review
        nightly(archive, tmp_path / "Flowers", *first)
        assert len(os.listdir(review)) == 4
        again = ("--review-to", review)
    else:
        nightly(archive, desktop / "Flowers")
        again = ()
    for i in range(3):
        write_photo(desktop / f"dog {i}.jpg", make_photo(rng, False))
    write_photo(archive / "new.jpg", make_photo(rng, True))
    moved = nightly(archive, desktop, *again)
    assert outcomes(moved)["new.jpg"]["action"] in ("moved", "review")
    assert "already holds 3 photos that flowersort did not put there" in moved.stderr
    assert Store().corrections() == []


def test_undo_takes_back_the_flower_labels_its_run_learnt(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    rng = np.random.default_rng(22)
    write_photo(dest / "by hand.jpg", make_photo(rng, True))
    write_photo(archive / "new.jpg", make_photo(rng, True))  # so that run 2 moves a photo
    assert outcomes(nightly(archive, dest))["new.jpg"]["action"] == "moved"
    assert [c.kind for c in Store().corrections()] == ["added"]
    undone = run("undo")
    assert undone.exit_code == 0 and "1 flower label learnt by that run taken back" in undone.output
    assert Store().corrections() == []
    assert outcomes(nightly(archive, dest))["new.jpg"]["action"] == "moved"
    assert Store().corrections() == []  # not learnt again from the photo still in DEST


def test_forget_takes_a_folder(archive, tmp_path):
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    rng = np.random.default_rng(23)
    for name in ("a.jpg", "old/b.jpg"):
        write_photo(dest / name, make_photo(rng, True))
    take_out(dest, "IMG_0001.jpg", archive / "not one.jpg")
    nightly(archive, dest)
    assert len(Store().corrections()) == 3
    forgot = run("corrections", "forget", dest)
    assert forgot.exit_code == 0, forgot.output
    assert sorted(forgot.output.splitlines()) == [
        f"forgot: flower: {dest / 'a.jpg'}",
        f"forgot: flower: {dest / 'old' / 'b.jpg'}",
    ]
    assert [c.path.name for c in Store().corrections()] == ["not one.jpg"]  # not in the folder
    nightly(archive, dest)
    assert [c.path.name for c in Store().corrections()] == ["not one.jpg"]  # not learnt again
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("corrections", "forget", empty)
    assert (
        nothing.exit_code == 2
        and nothing.output == f"Error: no correction for a photo in {empty}\n"
    )


def test_a_store_of_version_1_takes_the_run_of_each_label(archive, tmp_path):
    """A store written before labels had a run: upgraded in place, its labels kept."""
    import sqlite3

    path = store_path()
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE corrections (size INTEGER NOT NULL, sha256 TEXT NOT NULL, label TEXT "
        "NOT NULL, kind TEXT NOT NULL, path BLOB NOT NULL, noted REAL NOT NULL, "
        "PRIMARY KEY (size, sha256)); PRAGMA user_version = 1;"
    )
    db.execute("INSERT INTO corrections VALUES (1, 'ab', 'not-flower', 'mark', x'2f61', 0)")
    db.commit()
    db.close()
    dest = tmp_path / "Flowers"
    nightly(archive, dest)
    write_photo(dest / "by hand.jpg", make_photo(np.random.default_rng(24), True))
    nightly(archive, dest)
    assert sorted(c.kind for c in Store().corrections()) == ["added", "mark"]
