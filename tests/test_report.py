"""The HTML contact sheet: well formed, one entry per photo, self-contained, and it renders."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from flowersort.cli import cli
from tests.conftest import make_archive

VOID = {"meta", "input", "br", "img"}


class Checker(HTMLParser):
    """Fails on unbalanced tags and on anything fetched from outside the page."""

    def __init__(self):
        super().__init__()
        self.stack, self.script, self.external = [], "", []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.external.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.script += data


def data_of(page: str) -> list[dict]:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [] and checker.external == []
    start = checker.script.index("const DATA = ") + len("const DATA = ")
    return json.loads(checker.script[start : checker.script.index(";\nconst grid")])


CHROMIUM_FLAGS = [  # headless, and no calls to Google's servers on a closed network
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def archive(tmp_path):
    return make_archive(tmp_path / "Pictures", 8, seed=4, bad_name="broken.jpg")


def classify_with_report(archive, model, report, *extra):
    args = ["classify", archive, "--report", report, "--model", model, "--workers", 1, *extra]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return data_of(report.read_text())


def test_classify_report(archive, trained_model, tmp_path):
    report = tmp_path / "report.html"
    rows = classify_with_report(archive, trained_model, report, "--move-to", tmp_path / "Flowers")
    assert len(rows) == 9
    skipped = [r for r in rows if r["action"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["detail"] and skipped[0]["thumb"] is None
    shown = [r for r in rows if r["action"] != "skipped"]
    assert all(r["thumb"] and len(r["heat"]) == 4 for r in shown)  # moved ones too
    from flowersort.model import load_model

    threshold = load_model(trained_model).threshold
    distance = [abs(r["score"] - threshold) for r in shown]
    assert distance == sorted(distance)  # borderline first
    assert rows[-1]["score"] is None  # skipped last


def test_evaluate_report_marks_misclassified(examples, trained_model, tmp_path):
    report = tmp_path / "eval.html"
    result = CliRunner().invoke(
        cli,
        ["evaluate", *map(str, examples), "--model", str(trained_model), "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    rows = data_of(report.read_text())
    assert len(rows) == 60 and all(r["truth"] is not None for r in rows)


def test_train_prints_the_validation_report(examples, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["train", *map(str, examples), "--model", str(tmp_path / "m.npz"), "--epochs", "3"]
        + ["--members", "3"],
    )
    assert result.exit_code == 0, result.output
    assert f"validation report written to {tmp_path / 'm.validation.html'}" in result.output
    # the held-out fold (a fifth of the 60 examples, none of the three members learnt
    # from), each photo once, with the model's own score
    rows = data_of((tmp_path / "m.validation.html").read_text())
    assert len(rows) == len({r["path"] for r in rows}) == 12
    assert all(r["truth"] is not None for r in rows)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(archive, trained_model, tmp_path):
    import cv2

    report = tmp_path / "report.html"
    classify_with_report(archive, trained_model, report)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,700",
            report.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (700, 1000)
    assert img.std() > 20  # not blank: thumbnails and text were drawn
    magenta = (img[..., 2] > 150) & (img[..., 0] > 100) & (img[..., 1] < 100)
    assert magenta.sum() > 50  # the heat-map overlay is visible
