"""The HTML contact sheet: well formed, one entry per photo, self-contained, and it renders."""

import re

import pytest
from click.testing import CliRunner

from flowersort.cli.app import cli
from tests.conftest import make_archive
from tests.report_page import chromium, data_of, run_chromium


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
    from flowersort.model.file import load_model

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


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(archive, trained_model, tmp_path):
    import cv2

    report = tmp_path / "report.html"
    classify_with_report(archive, trained_model, report)
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1000,700",
                 report.as_uri())  # fmt: skip
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (700, 1000)
    assert img.std() > 20  # not blank: thumbnails and text were drawn
    magenta = (img[..., 2] > 150) & (img[..., 0] > 100) & (img[..., 1] < 100)
    assert magenta.sum() > 50  # the heat-map overlay is visible


# Clicks in the page itself, then "save marks"; the saved JSON is written into the DOM.
CLICKS = """<script>
const blobs = [];
const createObjectURL = URL.createObjectURL;
URL.createObjectURL = b => { blobs.push(b); return createObjectURL.call(URL, b); };
addEventListener("load", () => setTimeout(async () => {
  const cards = [...document.querySelectorAll(".card[data-markable]")];
  cards[0].querySelector(".meta .p").click();  // the text of a card: marked
  const link = cards[1].querySelector("a");    // its thumbnail opens the photo instead
  link.addEventListener("click", e => e.preventDefault());
  cards[1].querySelector("img").click();
  cards[2].click(); cards[2].click();           // twice: not marked
  cards[3].click();
  document.querySelector("input[name=f][value=other]").click();  // filtered and back
  document.querySelector("input[name=f][value=all]").click();
  const out = document.createElement("pre");
  out.id = "out";
  out.dataset.button = document.getElementById("save").textContent;
  out.dataset.marked = document.querySelectorAll(".card.marked").length;
  document.getElementById("save").click();
  out.textContent = blobs.length === 1 ? await blobs[0].text() : "no download";
  document.body.appendChild(out);
}, 200));
</script>"""


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_clicks_in_chromium_mark_cards_and_save_marks_for_train(archive, trained_model, tmp_path):
    """The click handlers and the save button in a real DOM, not only marksJson."""
    import html

    from flowersort.sorting.marks import read_marks

    report = tmp_path / "report.html"
    rows = classify_with_report(archive, trained_model, report)
    scored = [r for r in rows if r["score"] is not None]  # cards in the page's order
    page = tmp_path / "clicked.html"
    page.write_text(report.read_text().replace("<head>", "<head>\n" + CLICKS, 1))
    dom = run_chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                       page.as_uri())  # fmt: skip
    out = re.search(r'<pre id="out" data-button="([^"]*)" data-marked="(\d+)">(.*?)</pre>',
                    dom, re.S)  # fmt: skip
    assert out is not None, dom[-2000:]
    assert out.group(1) == "save marks (2)" and out.group(2) == "2"
    saved = tmp_path / "flowersort-marks.json"
    saved.write_text(html.unescape(out.group(3)))
    marks = read_marks(saved)  # what train --marks reads
    expected = [scored[0], scored[3]]
    assert [m["path"] for m in marks] == [r["file"] for r in expected]
    assert [m["label"] for m in marks] == [
        "not-flower" if r["flower"] else "flower" for r in expected
    ]


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_where_a_photo_went_breaks_after_a_slash_like_its_path(archive, trained_model, tmp_path):
    report = tmp_path / "report.html"
    classify_with_report(archive, trained_model, report, "--move-to", tmp_path / "Flowers")
    dom = run_chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    moved = re.findall(r'<span class="a">moved to: (.*?)</span>', dom)
    assert moved  # 'Flowers/<wbr>IMG_0001.jpg', never 'Flowers/IMG_00' + '01.jpg' on a card
    for text in moved:
        assert text.count("/<wbr>") == text.count("/") > 2


def test_the_heat_map_describes_the_input_that_was_scored(archive, trained_model, tmp_path):
    """The map comes from the features decoded as scoring decoded them (the network's
    size, EXIF preview or not as classify was told), not from the card's own preview."""
    import numpy as np

    from flowersort.model.features import load_features
    from flowersort.model.file import load_model

    model = load_model(trained_model)
    for extra in ([], ["--thumbnails"]):
        rows = classify_with_report(archive, trained_model, tmp_path / "r.html", *extra)
        shown = [r for r in rows if r["heat"] is not None]
        assert shown
        for r in shown:
            x = load_features(r["file"], model.features, thumbnail=bool(extra))
            expected = np.round(model.flower_evidence(x[None])[0], 2)
            assert np.allclose(r["heat"], expected, atol=0.011), r["path"]


def test_a_name_that_opens_a_comment_stays_data(archive, trained_model, tmp_path):
    """A photo named `<!--<script>.jpg` hid every photo of the page (the parser took
    the rest for a comment); the data holds `<` only as \\u003c."""
    import shutil

    photo = next(archive.rglob("*.jpg"))
    names = ["<!--<script>.jpg", "a&b>c.jpg"]
    for name in names:
        shutil.copy(photo, photo.with_name(name))
    report = tmp_path / "report.html"
    rows = classify_with_report(archive, trained_model, report)
    script = report.read_text().split("const DATA = ", 1)[1].split(";\nconst grid", 1)[0]
    assert "<" not in script and ">" not in script
    assert set(names) <= {r["file"].rsplit("/", 1)[-1] for r in rows}
