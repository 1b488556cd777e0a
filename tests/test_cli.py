"""End to end through the command line, on generated photos whose hue separates the classes."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowersort.cli.app import cli
from tests.conftest import census, make_folders, make_photo, nested_archive, run, write_photo


@pytest.fixture
def archive(tmp_path):
    """An archive with 6 flowers and 6 others in nested folders."""
    root = nested_archive(tmp_path)
    return root


def test_train_writes_a_model_that_evaluates_well(examples, tmp_path):
    model = tmp_path / "models" / "mine.npz"
    result = run(
        "train",
        *examples,
        "--model",
        model,
        "--epochs",
        150,
        "--patience",
        40,
        "--image-size",
        48,
        "--grid",
        4,
        "--flower-share",  # the examples are balanced: so is the collection it is meant for
        0.5,
    )
    assert result.exit_code == 0, result.output
    assert "model written to" in result.output and model.is_file()
    result = run("evaluate", *examples, "--model", model, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "tp",
        "fp",
        "tn",
        "fn",
        "misclassified",
    }
    assert report["accuracy"] >= 0.95
    assert report["tp"] + report["fn"] == 30 and report["tn"] + report["fp"] == 30


def test_evaluate_text_sweep_and_folders(examples, trained_model):
    result = run("evaluate", *examples, "--model", trained_model, "--sweep", "--by-folder")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accuracy ")
    assert "threshold  precision  recall" in result.output
    assert re.search(r"^flowers: \d+ wrong of 30$", result.output, re.M)  # flat: no "/."


def test_dry_run_touches_nothing(archive, trained_model, tmp_path):
    before = census(archive)
    listing = sorted(archive.rglob("*"))
    dest = tmp_path / "Flowers"
    result = run("classify", archive, "--move-to", dest, "--dry-run", "--model", trained_model)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("would move: ") >= 5
    assert sorted(archive.rglob("*")) == listing and census(archive) == before
    assert not dest.exists()


def test_classify_moves_the_flowers(archive, trained_model, tmp_path):
    dest = tmp_path / "Flowers"
    before = census(archive)
    result = run("classify", archive, "--move-to", dest, "--json", "--model", trained_model)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 12
    assert all({"path", "score", "flower", "action"} <= set(line) for line in lines)
    moved = [line for line in lines if line["action"] == "moved"]
    assert all(line["flower"] and "garden" in line["path"] for line in moved)
    assert len(moved) >= 5
    assert census(archive, dest) == before  # nothing lost, nothing duplicated
    assert len(list(dest.iterdir())) == len(moved)


def test_threshold_override(archive, trained_model, tmp_path):
    for threshold, flowers in ((0, 12), (1, 0)):
        result = run(
            "classify", archive, "--json", "--threshold", threshold, "--model", trained_model
        )
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 12 and sum(line["flower"] for line in lines) == flowers


def test_target_inside_archive_is_not_entered_and_never_overwritten(archive, trained_model):
    dest = archive / "Flowers"
    dest.mkdir()
    (dest / "fl_000.jpg").write_bytes(b"an older file with the same name")
    before = census(archive)
    result = run("classify", archive, "--move-to", dest, "--json", "--model", trained_model)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 12 and not any("/Flowers/" in line["path"] for line in lines)
    moved = [line for line in lines if line["action"] == "moved"]
    assert moved
    assert (dest / "fl_000.jpg").read_bytes() == b"an older file with the same name"
    assert census(archive) == before
    # a second run finds nothing new to move: the target is not re-classified
    again = run("classify", archive, "--move-to", dest, "--json", "--model", trained_model)
    assert again.exit_code == 0, again.output
    actions = [json.loads(line)["action"] for line in again.stdout.splitlines()]
    assert len(actions) == 12 - len(moved) and "moved" not in actions


def test_bad_files_are_skipped_and_the_run_goes_on(archive, trained_model):
    (archive / "empty.jpg").write_bytes(b"")
    (archive / "notes.jpg").write_text("not a photo")
    result = run("classify", archive, "--model", trained_model)
    assert result.exit_code == 0, result.output
    assert f"skipped: {archive / 'empty.jpg'}: empty file" in result.stderr
    assert "notes.jpg: not an image OpenCV can decode" in result.stderr
    assert "2 skipped" in result.stderr


@pytest.mark.parametrize("content", [None, b"not a zip", b"PK\x03\x04broken"])
def test_bad_model_is_one_line_and_exit_2(archive, tmp_path, content):
    model = tmp_path / "model.npz"
    if content is not None:
        model.write_bytes(content)
    result = run("classify", archive, "--model", model)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: model file") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_nets_that_do_not_fit_the_features_stop_the_run_not_skip_every_photo(
    archive, trained_model, tmp_path
):
    """Scored in the workers, the nets' ValueError was taken for a photo's ("cannot process
    the decoded image"): every photo skipped, exit 0, nothing said under cron."""
    with np.load(trained_model) as data:
        arrays = {k: data[k] for k in data.files}
    features = json.loads(str(arrays["features"]))
    arrays["features"] = np.array(json.dumps(dict(features, grid=6)))  # nets made for 4
    np.savez(tmp_path / "m.npz", **arrays)
    for workers in ("1", "2"):
        result = run("classify", archive, "--model", tmp_path / "m.npz", "--workers", workers)
        assert result.exit_code == 4, result.output
        assert "unexpected ValueError" in result.stderr and "skipped" not in result.stderr


def test_weight_decay_is_an_option_saved_in_the_model(examples, tmp_path):
    from flowersort.model.file import load_model

    small = ("--image-size", 48, "--grid", 4, "--crops", 1, "--epochs", 2, "--workers", 1)
    paths = {decay: tmp_path / f"{decay}.npz" for decay in ("0", "0.5")}
    for decay, path in paths.items():
        result = run("train", *examples, *small, "--weight-decay", decay, "--model", path)
        assert result.exit_code == 0, result.output
    summaries = {decay: load_model(path).summary for decay, path in paths.items()}
    assert summaries["0.5"]["train_config"]["weight_decay"] == 0.5
    assert summaries["0"]["train_config"]["weight_decay"] == 0
    heavy, none = (load_model(paths[d]).nets[0].state()["tile.0.w"] for d in ("0.5", "0"))
    assert not np.array_equal(heavy, none)  # the decay reached the optimiser
    result = run("train", *examples, "--weight-decay", "-1", "--model", tmp_path / "x.npz")
    assert result.exit_code == 2 and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("decay", ["nan", "inf", "1e400"])
def test_a_weight_decay_that_is_no_number_is_a_usage_error(examples, tmp_path, decay):
    """NaN or infinite decay made every weight NaN, and the model was saved (exit 0)."""
    model = tmp_path / "m.npz"
    result = run("train", *examples, "--weight-decay", decay, "--epochs", 1, "--model", model)
    assert result.exit_code == 2, result.output
    assert "Error: weight_decay must be a finite number, at least 0" in result.stderr
    assert "Traceback" not in result.output and not model.exists()


@pytest.mark.parametrize("rate", ["nan", "inf", "0", "-0.01"])
def test_a_learning_rate_that_is_no_step_is_a_usage_error(examples, tmp_path, rate):
    """NaN or infinite steps made every weight NaN, 0 or less learnt nothing (or worse),
    and the model was saved (exit 0)."""
    model = tmp_path / "m.npz"
    result = run("train", *examples, "--learning-rate", rate, "--epochs", 1, "--model", model)
    assert result.exit_code == 2, result.output
    assert "Error: learning_rate must be a finite number above 0" in result.stderr
    assert "Traceback" not in result.output and not model.exists()


def test_more_histogram_bins_than_a_pixel_has_values_is_a_usage_error(examples, tmp_path):
    """--bins 100000 ran out of memory reading the first photo: exit 4, "unexpected"."""
    model = tmp_path / "m.npz"
    result = run("train", *examples, "--bins", 257, "--epochs", 1, "--model", model)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: histograms have at least 2 and at most 256 bins (")
    assert not model.exists()


def test_train_on_one_class_is_exit_2(examples, tmp_path):
    flowers, _ = examples
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("train", flowers, empty, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert "both classes" in result.stderr


def test_every_command_has_help():
    for name, command in cli.commands.items():
        assert command.help, name
        result = run(name, "--help")
        assert result.exit_code == 0 and "Exit codes" in result.output


def test_installed_entry_point(archive, trained_model):
    exe = Path(sys.executable).parent / "flowersort"
    if not exe.exists():
        pytest.skip("flowersort is not installed in this environment")
    proc = subprocess.run(
        [exe, "classify", archive, "--json", "--model", trained_model],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 12
    # the summary line, no bar off a terminal
    assert proc.stderr.strip().endswith(f" flowers; model {trained_model}")


def test_classify_names_the_model_it_scores_with(archive, trained_model, examples, tmp_path):
    from flowersort.model.file import default_model_path

    mine = run("classify", archive, "--model", trained_model, "--workers", 1, "--json")
    assert mine.stderr.splitlines()[-1].endswith(f"; model {trained_model}")
    rows = [json.loads(line) for line in mine.stdout.splitlines()]
    assert len(rows) == 12 and {row["model"] for row in rows} == {str(trained_model)}
    shipped = run("classify", archive / "2023", "--workers", 1)
    assert shipped.stderr.splitlines()[-1].endswith(f"; model {default_model_path()}")
    evaluated = run("evaluate", *examples, "--model", trained_model, "--json", "--workers", 1)
    assert json.loads(evaluated.stdout)["model"] == str(trained_model)


def test_train_says_how_to_sort_with_the_model_it_wrote(examples, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--epochs", 2, "--members", 1, "--image-size", 48, "--grid", 4, "--crops", 1]
    result = run("train", *examples, *tiny, "--workers", 1)  # no --model: ./model.npz
    assert result.exit_code == 0, result.output
    hint = f"to sort with it: flowersort classify SRC --model {tmp_path / 'model.npz'}"
    assert result.stdout.splitlines()[-1] == hint


def test_classify_without_target_lists_the_flowers(archive, trained_model):
    result = run("classify", archive, "--model", trained_model, "--workers", 1)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) >= 5 and all(line.startswith("flower: ") for line in lines)
    assert all("garden" in line for line in lines)
    assert "12 photos: 0 moved, 0 copied, 12 kept, 0 skipped, 0 failed" in result.stderr
    assert f"0 failed; {len(lines)} flowers; model" in result.stderr  # the flowers listed


@pytest.mark.parametrize("head", ["8,1", "8,2,1", "1"])
def test_a_head_that_gives_no_single_score_is_a_usage_error_before_any_photo(tmp_path, head):
    folder = tmp_path / "examples"  # the same folder twice: reading it would be an error too
    folder.mkdir()
    result = run("train", folder, folder, "--head-layers", head, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert "head_layers must end with 1,1" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    "option, layers",
    [("--tile-layers", "32,0,1"), ("--tile-layers", "-4"), ("--head-layers", "0,1,1")],
)
def test_a_layer_of_no_rows_is_a_usage_error_before_any_photo(tmp_path, option, layers):
    flowers, noflowers = make_folders(tmp_path, 4)
    small = ("--image-size", 48, "--grid", 4, "--crops", 1, "--epochs", 1, "--workers", 1)
    result = run("train", flowers, noflowers, option, layers, *small, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2, result.output  # was 4, "unexpected ZeroDivisionError"
    assert "layers need at least 1 row each" in result.output
    assert "unexpected" not in result.output and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    "options",
    [["--image-size=0"], ["--image-size=-6"], ["--image-size=24000"], ["--grid=0"],
     ["--mode=hue-hist", "--bins=0"]],
)  # fmt: skip
def test_an_impossible_photo_size_grid_or_bins_is_a_usage_error(tmp_path, options):
    flowers, noflowers = make_folders(tmp_path, 4)
    result = run("train", flowers, noflowers, *options, "--model", tmp_path / "m.npz")
    # were: every photo skipped with OpenCV's two-line message, or, at 24000, the run
    # killed for want of memory
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "skipped" not in result.output, result.output
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("option", ["--tile-layers", "--head-layers"])
def test_a_layer_too_large_for_memory_is_a_usage_error(tmp_path, option):
    flowers, noflowers = make_folders(tmp_path, 4)
    layers = "1000000000,1,1"
    result = run("train", flowers, noflowers, option, layers, "--model", tmp_path / "m.npz")
    assert result.exit_code == 2, result.output  # was 4, "unexpected MemoryError"
    assert "layers have at most 4096 rows each" in result.output
    assert not (tmp_path / "m.npz").exists()


def test_a_net_too_large_for_the_memory_there_is_a_one_line_error(tmp_path):
    """A real allocation failure: the address space is limited to 3 GB, and a 4096 x 4096
    tile map per tile would need far more."""
    import resource

    flowers, noflowers = make_folders(tmp_path, 5)
    limit = 3 * 1024**3
    result = subprocess.run(
        [sys.executable, "-m", "flowersort", "train", flowers, noflowers, "--tile-layers",
         "4096,4096,1", "--image-size", "48", "--grid", "4", "--crops", "1", "--epochs", "1",
         "--workers", "1", "--quiet", "--model", tmp_path / "m.npz"],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # was 4, "unexpected MemoryError"
    assert "not enough memory to train nets of layers [4096, 4096, 1]" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m.npz").exists()


def test_workers_that_cannot_be_started_leave_no_run_hanging(tmp_path):
    """A real fault: a 100 GB stack limit makes every new thread's stack too large to map,
    so the decoding pool's manager thread fails after its worker processes were forked.
    The run ended in an error line and then hung, waiting at exit for those workers."""
    import resource

    flowers, noflowers = make_folders(tmp_path, 4)
    stack = 100 * 1024**3
    result = subprocess.run(
        [sys.executable, "-m", "flowersort", "train", flowers, noflowers, "--workers", "2",
         "--image-size", "48", "--grid", "4", "--quiet", "--model", tmp_path / "m.npz"],
        capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_STACK, (stack, stack)),
    )  # fmt: skip
    assert result.returncode != 0 and "Error: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m.npz").exists()


def test_hidden_files_and_thumbnail_caches_are_left_out_unless_asked(archive, trained_model):
    from tests.conftest import make_photo, write_photo

    rng = np.random.default_rng(5)
    hidden = [archive / ".trash" / "a.jpg", archive / "@eaDir" / "b.jpg", archive / ".c.jpg"]
    for path in hidden:
        path.parent.mkdir(exist_ok=True)
        write_photo(path, make_photo(rng, True))
    for extra, seen in (([], 12), (["--include-hidden"], 15)):
        result = run("classify", archive, "--json", "--model", trained_model, *extra)
        assert result.exit_code == 0, result.output
        paths = {json.loads(line)["path"] for line in result.stdout.splitlines()}
        assert len(paths) == seen
        assert {str(p) for p in hidden} <= paths if extra else not paths & set(map(str, hidden))


def test_wait_waits_for_the_other_run_instead_of_exit_3(archive, trained_model, tmp_path):
    import threading

    from flowersort.sorting.lock import RunLock
    from flowersort.sorting.state import state_dir

    lock = RunLock(state_dir())
    released = threading.Timer(1.5, lock.release)
    released.start()
    args = ["classify", archive, "--move-to", tmp_path / "Flowers", "--model", trained_model]
    start = time.monotonic()
    result = run(*args, "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= 1.4  # it waited for the lock, then moved
    assert any(json.loads(line)["action"] == "moved" for line in result.stdout.splitlines())


def test_a_closed_output_pipe_stops_the_run_cleanly(archive, trained_model, tmp_path):
    """`flowersort classify ... --json | head -1`: exit 141, one line, nothing lost, the
    lock free for the next run."""
    import fcntl

    from tests.runs import make_archive

    archive = tmp_path / "Pictures"
    make_archive(archive, 60)  # about 20 KB of --json lines: more than the pipe holds
    dest = tmp_path / "Flowers"
    before = census(archive)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "flowersort", "classify", str(archive), "--move-to", str(dest)]
    args += ["--threshold", "0", "--json", "--workers", "1", "--model", str(trained_model)]
    read_end, write_end = os.pipe()
    # the smallest pipe, so that the run cannot have written every line before the reader
    # goes away, however the machine schedules the two (F_SETPIPE_SZ)
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    proc = subprocess.Popen(args, env=env, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    with open(read_end, "rb") as out:
        first = json.loads(out.readline())
    # the reader went away, as head does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert first["action"] == "moved"
    assert "Traceback" not in err and "output pipe was closed" in err
    assert len(list(dest.rglob("*.jpg"))) < 60  # it stopped early
    assert census(archive, dest) == before
    listed = json.loads(run("undo", "--list", "--json").stdout)
    assert listed["state"] == "stopped"  # not "done": it ended before its last photo
    again = run("classify", archive, "--move-to", dest, "--threshold", 0, "--model", trained_model)
    assert again.exit_code == 0, again.output
    assert census(dest) == before


def test_an_undo_whose_reader_went_away_at_its_last_line_is_done(tmp_path):
    """`flowersort undo | head -0`: the reader goes away as undo says its last photo, put
    back: the run is undone (not 'partly undone', to be undone again)."""
    photo = write_photo(
        tmp_path / "Pictures" / "IMG_0001.jpg", make_photo(np.random.default_rng(1), True)
    )
    result = run("classify", photo.parent, "--move-to", tmp_path / "Flowers", "--threshold", 0)
    assert result.exit_code == 0 and not photo.exists(), result.output
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    read, write = os.pipe()
    os.close(read)  # no reader at all: its one line fails
    undo = subprocess.run(
        [sys.executable, "-m", "flowersort", "undo"], env=env, stdout=write, stderr=subprocess.PIPE
    )
    os.close(write)
    assert undo.returncode == 141, undo.stderr
    assert photo.exists()
    listed = [json.loads(line) for line in run("undo", "--list", "--json").stdout.splitlines()]
    assert [r["state"] for r in listed] == ["undone"]


@pytest.mark.parametrize(
    "args,message",
    [
        (("classify", "/no/such/folder"), "Path '/no/such/folder' does not exist"),
        (("classify", ".", "--bogus"), "No such option"),
        (("nosuch",), "No such command 'nosuch'"),
        (("corrections", "forget"), "Missing argument 'TARGET'"),
        (("train", ".", ".", "--image-size", "0"), "the image size must be at least the grid"),
        (("train", ".", ".", "--tile-layers", "x"), "expected numbers separated by commas"),
    ],
)
def test_a_usage_error_is_one_line_that_says_where_to_read_more(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert result.stderr.startswith("Error: ") and "--help')" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("classify", ".", "--threshold"),
        ("undo", "--log-file"),
        ("train", ".", ".", "--epochs"),
        ("corrections", "list", "--json=x"),
    ],
)
def test_a_usage_error_names_the_help_of_its_own_command(args):
    """An option given no value (click's error then names no command) too."""
    result = run(*args)
    command = " ".join(a for a in args if a.isalpha())
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(f" {command} --help')\n"), result.stderr


def test_no_command_shows_the_help():
    result = run()
    assert "Commands:" in result.output and "classify" in result.output


def test_json_names_that_are_not_utf8_come_with_their_bytes(trained_model, tmp_path):
    import base64

    folder = tmp_path / "p"
    rng = np.random.default_rng(5)
    write_photo(folder / "plain.jpg", make_photo(rng, True))
    latin1 = os.fsencode(folder) + b"/caf\xe9.jpg"  # a Latin-1 name from an old camera
    Path(os.fsdecode(latin1)).write_bytes((folder / "plain.jpg").read_bytes())
    result = run("classify", folder, "--json", "--model", trained_model, "--workers", 1)
    rows = {Path(row["path"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert "path_bytes" not in rows["plain.jpg"]
    assert base64.b64decode(rows["caf\udce9.jpg"]["path_bytes"]) == latin1
    # where it went, too: the target's name is the same bytes (a script must find it there)
    dest = tmp_path / "Flowers"
    how = ["--move-to", dest, "--threshold", 0, "--json", "--model", trained_model]
    moved = run("classify", folder, *how, "--workers", 1)
    rows = {Path(row["path"]).name: row for row in map(json.loads, moved.stdout.splitlines())}
    assert "detail_bytes" not in rows["plain.jpg"]
    went = base64.b64decode(rows["caf\udce9.jpg"]["detail_bytes"])
    assert went == os.fsencode(dest) + b"/caf\xe9.jpg" and os.path.exists(went)


def test_folders_whose_names_are_not_utf8_can_be_sorted_and_undone(trained_model, tmp_path):
    """A Latin-1 album (an old NAS share) as SRC and as the target: the run's folders are
    journalled as their bytes, not an unexpected UnicodeEncodeError (exit 4)."""
    album = Path(os.fsdecode(os.fsencode(tmp_path) + b"/Ferien \xd6sterreich"))
    rng = np.random.default_rng(5)
    write_photo(album / "rose.jpg", make_photo(rng, True))
    dest = Path(os.fsdecode(os.fsencode(tmp_path) + b"/Blumen \xfc"))
    how = ["--move-to", dest, "--threshold", 0, "--model", trained_model, "--workers", 1]
    moved = run("classify", album, *how)
    assert moved.exit_code == 0, moved.output
    assert (dest / "rose.jpg").exists() and not (album / "rose.jpg").exists()
    listed = run("undo", "--list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["dest"] == str(dest.absolute())
    undone = run("undo")
    assert undone.exit_code == 0, undone.output
    assert (album / "rose.jpg").exists() and not dest.exists()


def test_training_with_the_folders_swapped_warns(examples, tmp_path):
    flowers, noflowers = examples
    tiny = ["--epochs", 1, "--members", 1, "--image-size", 48, "--grid", 4, "--crops", 0]
    swapped = run("train", noflowers, flowers, *tiny, "--model", tmp_path / "a.npz")
    assert swapped.exit_code == 0, swapped.output
    assert (
        f"warning: the shipped model scores the photos of {noflowers} lower than those of "
        f"{flowers} (median " in swapped.stderr
    )
    assert "wrong way round" in swapped.stderr
    right = run("train", flowers, noflowers, *tiny, "--model", tmp_path / "b.npz")
    assert right.exit_code == 0 and "wrong way round" not in right.stderr


def test_help_is_written_per_command():
    def help_of(*command):
        return " ".join(run(*command, "--help").output.split())

    train = help_of("train")
    assert "undo" not in train and "move" not in train  # train moves nothing
    assert "undo" not in help_of("evaluate") and "move" not in help_of("evaluate")
    verbose = re.compile(r"-v, --verbose (.*?)(?: -q,| --)")
    assert verbose.search(train).group(1) != verbose.search(help_of("classify")).group(1)
    assert "kept" not in verbose.search(help_of("undo")).group(1)
    undo_log = re.search(r"--log-file PATH (.*?) --help", help_of("undo")).group(1)
    assert "kept" not in undo_log and "put back" in undo_log
    # the exit codes too: only undo has something to undo, only undo puts photos back
    for command in ("classify", "ask", "adapt", "evaluate", "train"):
        assert "nothing to undo" not in help_of(command), command
    for command in ("classify", "ask"):
        assert "put back" not in help_of(command).split("Exit codes:")[1], command
    assert "skipped" not in help_of("undo").split("Exit codes:")[1]  # undo reads no photo
    assert "model" not in help_of("corrections", "list").split("Exit codes:")[1]
    ask = help_of("ask")
    assert "kept" not in verbose.search(ask).group(1)  # ask lists no kept photo
    ask_log = re.search(r"--log-file PATH (.*?) --help", ask).group(1)
    assert "undo" not in ask_log and "kept" not in ask_log and "review folder" in ask_log
    assert "undo" not in re.search(r"--log-file PATH (.*?) --help", help_of("classify")).group(1)


def test_one_photo_put_into_the_target_is_said_in_the_singular(archive, trained_model, tmp_path):
    dest = tmp_path / "Flowers"
    args = ["classify", archive, "--move-to", dest, "--model", trained_model, "--workers", 1]
    assert run(*args).exit_code == 0
    write_photo(dest / "rose.jpg", make_photo(np.random.default_rng(6), True))
    assert f"1 photo put into {dest} by you: a flower example" in run(*args).stderr


def test_on_a_terminal_the_bars_end_says_how_long_it_took(archive, trained_model, tmp_path):
    """The bar clears itself at the end: a line says how long the run took; under cron
    (stderr not a terminal) no such line."""
    import pty

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "flowersort", "classify", str(archive), "--dry-run"]
    args += ["--move-to", str(tmp_path / "Flowers"), "--model", str(trained_model)]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the run closed the terminal's last end
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert re.search(rb"classifying took \d+\.\d s", seen), seen[-500:]
    piped = subprocess.run(args, env=env, capture_output=True, text=True)
    assert piped.returncode == 0 and "took" not in piped.stderr


def test_borderline_photos_left_in_place_come_with_a_hint_about_review_to(
    archive, trained_model, tmp_path
):
    args = ["classify", archive, "--move-to", tmp_path / "Flowers", "--model", trained_model]
    result = run(*args, "--dry-run", "--threshold", 0.5, "--review-band", 0.49)
    assert result.exit_code == 0
    n = int(re.search(r"(\d+) borderline,", result.stderr)[1])  # the summary's count
    hint = re.search(
        r"(\d+) borderline photos? (was|were) left in place: --review-to", result.stderr
    )
    assert n and hint and int(hint[1]) == n, result.stderr
    quiet = run(*args, "--dry-run", "--threshold", 0.5, "--review-band", 0.49, "-q")
    assert "--review-to" not in quiet.stderr
    with_folder = run(
        *args,
        "--dry-run",
        "--threshold",
        0.5,
        "--review-band",
        0.49,
        "--review-to",
        tmp_path / "Review",
    )
    assert "left in place" not in with_folder.stderr


def test_an_output_that_cannot_be_written_stops_the_run_with_one_line(
    archive, trained_model, tmp_path
):
    """`flowersort classify ... --json > out.json` on a full disk (/dev/full: every write
    is ENOSPC): exit 6 with one line, not 'unexpected OSError'; nothing lost."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    dest = tmp_path / "Flowers"
    before = census(archive)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "flowersort", "classify", str(archive), "--move-to", str(dest)]
    args += ["--threshold", "0", "--json", "--workers", "1", "--model", str(trained_model)]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(args, env=env, stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 6, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert errors == [
        "Error: cannot write the output (No space left on device): stopped; every move so far "
        "is done and in the journal (flowersort undo --list)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert 0 < len(list(dest.iterdir())) < 12  # it stopped at the first photo's line
    assert census(archive, dest) == before
    undo = run("undo")
    assert undo.exit_code == 0, undo.output
    assert census(archive) == before


def test_counts_are_said_in_the_singular_for_one():
    from flowersort.base.outcomes import counted

    assert [counted(n, "not flower") for n in (0, 1, 2)] == [
        "0 not flowers",
        "1 not flower",
        "2 not flowers",
    ]
