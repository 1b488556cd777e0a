"""`ask` and `adapt`: the photos worth answering go to review, the answers are the user's
moves, and the adapted model learns them."""

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np

from flowersort.model.file import load_model
from flowersort.sorting.adapt import questions
from tests.conftest import census, make_photo, run, write_photo


def test_the_questions_are_the_likeliest_flowers_that_do_not_move_yet():
    """A "yes" to one of those puts a flower where it belongs; a photo that moves anyway
    (at or above threshold + band) is not asked, nor one photo twice."""
    model = SimpleNamespace(threshold=0.5, review_band=0.1)  # moves from 0.6 up
    scored = [
        ("A/moves.jpg", 0.9),
        ("A/next.jpg", 0.59),
        ("B/after.jpg", 0.58),
        ("B/then.jpg", 0.57),
        ("C/unsure.jpg", 0.5),
        ("E/low.jpg", 0.05),
    ]
    assert questions(model, scored, 3, hashes={}) == ["A/next.jpg", "B/after.jpg", "B/then.jpg"]
    near = {"A/next.jpg": 0b1111, "B/after.jpg": 0b1110}  # one photo twice: asked once
    assert questions(model, scored, 2, hashes=near) == ["A/next.jpg", "B/then.jpg"]
    assert questions(model, scored, 10, hashes={})[-1] == "E/low.jpg"  # all there are


def archive(root, n=12, seed=3):
    """n generated photos in two folders, flowers named fl_*, others no_*."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        flower = i % 2 == 0
        name = f"{'fl' if flower else 'no'}_{i:02d}.jpg"
        write_photo(root / f"20{20 + i % 3}" / name, make_photo(rng, flower))
    return root


def lines(result):
    return [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]


def scores(model_path, folder):
    result = run("classify", folder, "--model", model_path, "--json", "--no-cache")
    return {os.path.basename(o["path"]): o["score"] for o in lines(result)}


def test_ask_moves_the_photos_it_asks_about_into_review_and_only_them(trained_model, tmp_path):
    pictures = archive(tmp_path / "Pictures")
    dest, review = tmp_path / "Flowers", tmp_path / "Review"
    before, score = census(pictures), scores(trained_model, pictures)
    base = ("ask", pictures, "--move-to", dest, "--review-to", review, "--model", trained_model)

    plan = run(*base, "-n", 3, "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output
    planned = [os.path.basename(o["path"]) for o in lines(plan)]
    assert [o["action"] for o in lines(plan)] == ["would-review"] * 3
    # where each would go: the name the move gives it (the dry run is the run, unmoving)
    assert [o["detail"] for o in lines(plan)] == [str(review / name) for name in planned]
    assert census(pictures) == before and not review.exists()
    # the questions ask's own rule takes: the likeliest flowers not moving yet
    scored = [(os.fspath(p), score[p.name]) for p in sorted(pictures.rglob("*.jpg"))]
    model = load_model(trained_model)
    chosen = questions(model, scored, 3)
    assert sorted(planned) == sorted(os.path.basename(p) for p in chosen)
    move = model.threshold + min(model.review_band or 0.1, (1 - model.threshold) / 2)
    not_asked = [v for name, v in score.items() if name not in planned and v < move]
    assert all(move > score[name] >= max(not_asked) for name in planned)

    done = run(*base, "-n", 3)
    assert done.exit_code == 0, done.output
    adapt = f"flowersort adapt {pictures} --move-to {dest} --review-to {review} --model "
    assert f"then run '{adapt}{trained_model} --out ADAPTED.npz'" in done.stderr  # as typed
    assert sorted(p.name for p in review.iterdir()) == sorted(planned)
    assert census(pictures, review) == before  # moved, not copied: each photo once

    undo = run("undo")
    assert undo.exit_code == 0 and not review.exists() and census(pictures) == before


def test_adapt_learns_the_answers_given_by_moving_files(trained_model, tmp_path):
    pictures = archive(tmp_path / "Pictures")
    dest, review = tmp_path / "Flowers", tmp_path / "Review"
    # the same nets with a line nothing reaches: every photo can be asked about
    strict = load_model(trained_model)
    strict.threshold, strict.summary["review_band"] = 0.99999, 0.0
    trained_model = tmp_path / "strict.npz"
    strict.save(trained_model)
    asked = run(
        "ask",
        pictures,
        "--move-to",
        dest,
        "--review-to",
        review,
        "--model",
        trained_model,
        "-n",
        12,
    )
    assert asked.exit_code == 0, asked.output
    out = tmp_path / "mine.npz"
    adapt = (
        "adapt",
        pictures,
        "--move-to",
        dest,
        "--review-to",
        review,
        "--model",
        trained_model,
        "--out",
        out,
    )
    nothing = run(*adapt)
    assert nothing.exit_code == 2 and "no answers yet" in nothing.output and not out.exists()

    # this user's taste is the opposite of the examples': every answer contradicts the model
    dest.mkdir()
    said = {"flowers": 0, "noflowers": 0}
    for photo in sorted(review.iterdir()):
        if photo.name.startswith("no_"):
            os.rename(photo, dest / photo.name)
            said["flowers"] += 1
        else:
            os.rename(photo, pictures / "2020" / photo.name)
            said["noflowers"] += 1
    assert min(said.values()) >= 3
    dry = run(*adapt, "--dry-run")
    assert dry.exit_code == 0 and not out.exists(), dry.output
    done = run(*adapt, "--json")
    assert done.exit_code == 0, done.output
    summary = lines(done)[0]
    assert {k: summary[k] for k in said} == said
    assert load_model(out).summary["adapted"]["answers"] == said
    archive_said = load_model(out).summary["adapted"]["archive"]
    assert summary["moves"] == archive_said["moved"]

    shutil.copytree(dest, tmp_path / "said-flower")
    old, new = (
        scores(trained_model, tmp_path / "said-flower"),
        scores(out, tmp_path / "said-flower"),
    )
    assert all(new[n] > old[n] for n in old)
    old, new = scores(trained_model, pictures), scores(out, pictures)
    assert all(new[n] < old[n] for n in old if n.startswith("fl_"))


def test_adapt_will_not_replace_the_model_it_starts_from(trained_model, tmp_path):
    result = run(
        "adapt",
        tmp_path,
        "--move-to",
        tmp_path / "F",
        "--model",
        trained_model,
        "--out",
        trained_model,
    )
    assert result.exit_code == 2
    assert result.output == "Error: --out must be another file than the model it starts from\n"


def moving(model_path, pictures, dest):
    """What classify --move-to dest would move out of pictures with this model."""
    result = run(
        "classify",
        pictures,
        "--move-to",
        dest,
        "--model",
        model_path,
        "--dry-run",
        "--json",
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    return sorted(os.path.basename(o["path"]) for o in lines(result) if o["action"] == "would-move")


def test_an_adapted_model_moves_as_many_of_the_archive_as_the_model_did(trained_model, tmp_path):
    """A refitted head shifts every score (here: all lower, as a few "not a flower" answers
    near the threshold did in benchmarks/unseen.py); the adapted model's threshold follows,
    so that it moves as many of the archive's photos, the ones it ranks highest."""
    from flowersort.scoring.pipeline import score_photos
    from flowersort.sorting.finetune import same_count_threshold

    pictures = archive(tmp_path / "Pictures", n=30)
    model = load_model(trained_model)
    model.threshold = 0.5
    base = [(str(s.path), s.score) for s in score_photos(model, sorted(pictures.rglob("*.jpg")))]
    shifted = load_model(trained_model)
    for net in shifted.nets:
        net.head.layers[-1].b -= 4.0  # every logit 4 lower: the same ranking
    shifted.threshold = model.threshold
    count = same_count_threshold(model, shifted, base)
    band = model.summary.get("review_band", 0.1)
    line = 0.5 + min(band, 0.25)
    assert count == sum(s >= line for _, s in base) > 0
    moved_before = sorted(p for p, s in base if s >= line)
    path = tmp_path / "shifted.npz"
    shifted.save(path)
    assert moving(path, pictures, tmp_path / "Flowers") == sorted(
        os.path.basename(p) for p in moved_before
    )


def test_the_photos_not_answered_keep_the_scores_the_model_gave_them(trained_model, tmp_path):
    from flowersort.scoring.pipeline import scan
    from flowersort.sorting.finetune import AdaptConfig, fine_tune

    pictures = archive(tmp_path / "Pictures", n=30)
    model = load_model(trained_model)
    photos = sorted(pictures.rglob("*.jpg"))
    x = np.stack([p.features for p in scan(photos, model.features, 1)])
    y = np.array([0.0 if p.name.startswith("fl_") else 1.0 for p in photos])  # all contradict
    answered, others = x[:6], x[6:]
    free = fine_tune(model, answered, y[:6], AdaptConfig(keep_weight=0))
    held = fine_tune(model, answered, y[:6], AdaptConfig(), keep=others)
    before = model.scores(others)
    moved = [np.abs(m.scores(others) - before).mean() for m in (free, held)]
    assert moved[1] < 0.75 * moved[0]  # 0.50 with numpy 2.4, 0.502 with numpy 2.0
    assert held.summary["adapted"]["kept_photos"] == len(others)


def test_ask_on_an_empty_source_creates_nothing_and_exits_5(trained_model, tmp_path):
    """An empty SRC (a NAS not mounted) is said in one line, as classify says it: no
    target or review folder is made inside the bare mount point."""
    mount_point = tmp_path / "nas"
    mount_point.mkdir()
    dest = mount_point / "Flowers"
    how = ["--move-to", dest, "--review-to", dest / "Review", "--model", trained_model]
    result = run("ask", mount_point, *how)
    assert result.exit_code == 5, result.output
    assert (
        result.stderr
        == f"Error: {mount_point} is empty: nothing to do, nothing created (is it mounted?)\n"
    )
    assert list(mount_point.iterdir()) == []


def test_an_ask_whose_reader_went_away_is_listed_as_stopped(trained_model, tmp_path):
    """`flowersort ask ... --json | head -1`: exit 141, and undo --list says the run was
    stopped, not done."""
    import fcntl
    import subprocess
    import sys
    from pathlib import Path

    from tests.runs import make_archive

    pictures = tmp_path / "Pictures"
    make_archive(pictures, 60)
    args = [sys.executable, "-m", "flowersort", "ask", str(pictures), "--json", "-n", 40]
    args += ["--move-to", str(tmp_path / "Flowers"), "--review-to", str(tmp_path / "Review")]
    args += ["--workers", "1", "--model", str(trained_model)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # 40 lines overflow it
    proc = subprocess.Popen(
        [str(a) for a in args], env=env, stdout=write_end, stderr=subprocess.PIPE
    )
    os.close(write_end)
    with open(read_end, "rb") as out:
        assert json.loads(out.readline())["action"] == "review"
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    listed = json.loads(run("undo", "--list", "--json").stdout)
    assert listed["state"] == "stopped"
