"""A self-contained HTML contact sheet: every photo as a small thumbnail with its score,
decision and action, and a heat map of where the network saw flowers: per tile of the
tile map, how much it pushed the score up (gradient x input through the head net).

Thumbnails are embedded as data URIs inside a JSON array, and the page builds the cards a
few hundred at a time as the user scrolls, so 10,000 photos still open at once. No
network, no external file.

A click on a card (not on its thumbnail, which opens the photo) marks its decision
wrong; "save marks" downloads them as a small JSON file (format "flowersort-marks": the
photo's path and size as they were when the page was written, and the label the user gave
it) that `flowersort train --marks FILE` reads.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from flowersort.base.errors import BadImage
from flowersort.base.outcomes import Outcome
from flowersort.model.features import FeatureConfig, features
from flowersort.photos.archive import size_of
from flowersort.photos.decode import cv2, jpeg_thumbnail, read_image
from flowersort.scoring.pipeline import worker_pool

THUMB = 128  # longest side of a thumbnail, in pixels


@dataclass
class Entry:
    path: str
    score: float | None
    flower: bool | None
    action: str
    detail: str = ""
    truth: bool | None = None  # known label (evaluate, train), else None
    shown_from: str | None = None  # where the photo is now, if it moved
    went_to: str = ""  # where it was moved or copied to, if anywhere


def outcome_entries(outcomes: Iterable[Outcome]) -> list[Entry]:
    """The cards of a classify run: a photo that moved is shown from where it is now."""
    return [
        Entry(
            os.fspath(o.source),
            o.score,
            o.flower,
            o.action.value,
            "; ".join(filter(None, [_tagged(o) or o.reason, o.note])),
            shown_from=o.target if o.moved_into_target else None,
            went_to=os.fspath(o.target) if o.target and not o.keyword else "",
        )
        for o in outcomes
    ]


def _tagged(o: Outcome) -> str:
    """A tag run's card: the keyword and the sidecar it is in (the photo stays)."""
    return f"{o.keyword} in {os.fsdecode(o.target)}" if o.keyword and o.target else ""


def _thumb_and_features(
    path: str, cfg: FeatureConfig, thumbnail: bool
) -> tuple[str, np.ndarray] | None:
    """The card's picture, and the features the network scored (decoded as scoring did,
    so the heat map describes the input behind the score, not the card's picture)."""
    try:
        img = read_image(path, cfg.image_size, thumbnail)  # as load_features reads it
        scored = features(img, cfg)
    except (BadImage, ValueError, cv2.error):  # as load_features: not a usable photo
        return None
    return base64.b64encode(jpeg_thumbnail(img, THUMB)).decode("ascii"), scored


def _text(path) -> str:
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def write_report(
    out: Path,
    entries: Iterable[Entry],
    model,
    title: str,
    workers: int = 1,
    thumbnail: bool = False,
) -> Path:
    """Write the page; thumbnails and tile maps are made from the photos as they are now
    (`thumbnail`: the photos were scored from their EXIF previews, as classify
    --thumbnails does)."""
    entries = list(entries)
    paths = [e.shown_from or e.path for e in entries if e.score is not None]
    cfgs, thumbnails = repeat(model.features), repeat(thumbnail)
    if workers > 1 and len(paths) > 32:
        with worker_pool(workers) as pool:  # dies with us, leaves Ctrl-C to us
            loaded = list(pool.map(_thumb_and_features, paths, cfgs, thumbnails, chunksize=16))
    else:
        loaded = list(map(_thumb_and_features, paths, cfgs, thumbnails))
    found = [(path, item) for path, item in zip(paths, loaded) if item is not None]
    by_path = {}
    for start in range(0, len(found), 256):  # the heat maps, a batch at a time
        batch = found[start : start + 256]
        heat = model.flower_evidence(np.stack([x for _, (_, x) in batch]))  # (n, grid, grid)
        for (path, (card, _)), h in zip(batch, heat):
            by_path[path] = (card, np.round(h, 2).tolist())
    rows = []
    for e in entries:
        thumb, heat = by_path.get(e.shown_from or e.path, (None, None))
        rows.append(
            {
                "path": _text(e.path),
                # where it is now, in full: train reads the marks from any folder; a
                # name's bytes that are not UTF-8 stay as surrogate escapes in the JSON
                "file": os.fsdecode(os.path.abspath(e.shown_from or e.path)),
                "size": size_of(e.shown_from or e.path),
                "score": None if e.score is None else round(e.score, 4),
                "flower": e.flower,
                "truth": e.truth,
                "action": e.action,
                "detail": e.detail,
                "went_to": _text(e.went_to),
                "href": _file_url(e.shown_from or e.path),
                "thumb": thumb,
                "heat": heat,
            }
        )
    threshold = model.threshold
    rows.sort(key=lambda r: (r["score"] is None, abs((r["score"] or 0) - threshold)))
    page = TEMPLATE.replace("__TITLE__", html.escape(title))
    page = page.replace("__DATA__", script_json(rows))
    page = page.replace("__THRESHOLD__", f"{threshold:.3f}")
    if not any(r["truth"] is not None for r in rows):  # no labels: nothing can be wrong
        page = page.replace(WRONG_FILTER, "")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _file_url(path: str | os.PathLike) -> str:
    """file:// link to the photo where it is now (names in any script or bytes)."""
    return Path(os.path.abspath(path)).as_uri()


def script_json(value) -> str:
    """JSON to embed in a <script>: `<`, `>` and `&` as \\u escapes (as Django's json_script),
    so no file name ends the script (`</script>`) or hides the rest of it (`<!--`)."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


WRONG_FILTER = '<label><input type="radio" name="f" value="wrong"> misclassified</label>\n'

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: 10px 16px;
         border-bottom: 1px solid #ddd; z-index: 2; }
h1 { font-size: 18px; margin: 0 0 6px; }
header label { margin-right: 14px; }
.help { font-size: 12px; color: #555; margin-top: 4px; }
#grid { display: flex; flex-wrap: wrap; gap: 10px; padding: 16px; }
.card { width: 150px; background: #fff; border: 1px solid #ddd; border-radius: 6px;
        padding: 6px; }
.card.wrong { border: 2px solid #d33; }
.card.marked { outline: 4px solid #f70; outline-offset: -2px; }
.card.marked .mark { display: block; }
.mark { display: none; color: #c50; font-weight: 600; font-size: 12px; }
.card[data-markable] { cursor: pointer; }
.frame { position: relative; width: 138px; height: 138px; display: flex;
         align-items: center; justify-content: center; background: #eee; }
.frame img { max-width: 138px; max-height: 138px; display: block; }
.heat { position: absolute; display: grid; pointer-events: none; }
.heat div { background: rgb(255, 0, 160); }
.heat div { outline: 1px solid rgba(255, 255, 255, 0.15); }
body.noheat .heat { display: none; }
.legend { display: inline-block; width: 90px; height: 10px; vertical-align: middle;
          background: linear-gradient(to right, rgba(255, 0, 160, 0), rgba(255, 0, 160, 0.4));
          border: 1px solid #ccc; }
.frame a { display: block; }
.meta { font-size: 12px; margin-top: 4px; overflow-wrap: anywhere; }
.score { font-weight: 600; }
.flower { color: #a0127a; } .other { color: #555; } .skip { color: #b60; }
</style>
</head>
<body>
<header>
<h1>__TITLE__</h1>
<div>
<label><input type="radio" name="f" value="all" checked> all</label>
<label><input type="radio" name="f" value="flower"> flowers</label>
<label><input type="radio" name="f" value="other"> not flowers</label>
<label><input type="radio" name="f" value="wrong"> misclassified</label>
<label><input type="radio" name="f" value="skipped"> skipped</label>
<label><input type="checkbox" id="heat" checked> heat map</label>
<span id="count"></span> &middot; threshold __THRESHOLD__ &middot; borderline scores first
</div>
<div class="help">heat map, on photos called flowers:
<span class="legend"></span> none &rarr; most, where the network saw flowers (each photo's
strongest tile is the darkest) &middot; click a photo to open it</div>
<div>Click a card's text where its decision is wrong to mark it, then
<button id="save">save marks (0)</button> for <code>flowersort train --marks FILE</code>.</div>
</header>
<main id="grid"></main>
<div id="more" style="height: 40px"></div>
<script>
const DATA = __DATA__;
const grid = document.getElementById("grid");
// --- marks (no DOM: tests run this part alone)
function marksJson(rows, title) {
  const marks = rows.filter(r => r.marked && r.score !== null).map(r => ({
    path: r.file, size: r.size, score: r.score,
    decision: r.flower ? "flower" : "not-flower",
    label: r.flower ? "not-flower" : "flower",
  }));
  return JSON.stringify({format: "flowersort-marks", version: 1, report: title,
                         threshold: __THRESHOLD__, marks: marks}, null, 1);
}
// --- end marks
function countMarks() {
  document.getElementById("save").textContent =
    "save marks (" + DATA.filter(r => r.marked).length + ")";
}
document.getElementById("save").onclick = () => {
  const blob = new Blob([marksJson(DATA, document.title)], {type: "application/json"});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "flowersort-marks.json";
  document.body.appendChild(a); a.click(); a.remove();
};
let shown = [], next = 0;
function keep(r, f) {
  if (f === "flower") return r.flower === true;
  if (f === "other") return r.flower === false;
  if (f === "wrong") return r.truth !== null && r.flower !== null && r.truth !== r.flower;
  if (f === "skipped") return r.score === null;
  return true;
}
function card(r) {
  const c = document.createElement("div");
  c.className = "card" + (r.truth !== null && r.flower !== null && r.truth !== r.flower
                          ? " wrong" : "");
  const frame = document.createElement("div");
  frame.className = "frame";
  if (r.thumb) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = "data:image/jpeg;base64," + r.thumb;
    img.alt = r.path;
    const link = document.createElement("a");
    link.href = r.href; link.title = "open " + r.path;
    link.appendChild(img);
    frame.appendChild(link);
    if (r.heat && r.flower) {  // on other photos it would only hide their colours
      img.onload = () => {
        const h = document.createElement("div");
        const n = r.heat.length;
        h.className = "heat";
        h.style.width = img.width + "px"; h.style.height = img.height + "px";
        h.style.gridTemplateColumns = "repeat(" + n + ", 1fr)";
        for (const row of r.heat) for (const v of row) {
          const d = document.createElement("div");
          d.style.opacity = (0.4 * v).toFixed(2);
          h.appendChild(d);
        }
        frame.appendChild(h);
      };
    }
  }
  const m = document.createElement("div");
  m.className = "meta";
  const kind = r.score === null ? "skip" : r.flower ? "flower" : "other";
  const label = r.score === null ? "skipped" : r.flower ? "flower" : "not a flower";
  m.innerHTML = '<span class="score ' + kind + '"></span><br><span class="a"></span>' +
                '<br><span class="p"></span>';
  m.querySelector(".score").textContent = label +
      (r.score === null ? "" : " " + r.score.toFixed(3)) +
      (r.truth === null ? "" : r.truth ? " (is a flower)" : " (is not a flower)");
  // long paths break after a slash, not mid-word: where the photo is and where it went
  const breakable = (el, text) => text.split("/").forEach((part, i, all) => {
    el.appendChild(document.createTextNode(part + (i < all.length - 1 ? "/" : "")));
    if (i < all.length - 1) el.appendChild(document.createElement("wbr"));
  });
  // each path says what it is: where the photo went, and where it was (or is)
  breakable(m.querySelector(".a"), r.action + (r.went_to ? " to: " + r.went_to : "") +
                                   (r.detail ? (r.went_to ? "; " : ": ") + r.detail : ""));
  breakable(m.querySelector(".p"), (r.went_to ? "from: " : "in: ") + r.path);
  const mark = document.createElement("div");
  mark.className = "mark";
  mark.textContent = "marked: " + (r.flower ? "not a flower" : "a flower");
  m.appendChild(mark);
  c.appendChild(frame); c.appendChild(m);
  if (r.score !== null) {
    c.dataset.markable = "1";
    if (r.marked) c.classList.add("marked");
    c.onclick = (ev) => {
      if (ev.target.closest("a")) return;  // the thumbnail opens the photo
      r.marked = !r.marked; c.classList.toggle("marked", r.marked); countMarks();
    };
  }
  return c;
}
function more() {
  const end = Math.min(next + 200, shown.length);
  for (; next < end; next++) grid.appendChild(card(shown[next]));
}
function filter() {
  const f = document.querySelector("input[name=f]:checked").value;
  shown = DATA.filter(r => keep(r, f)); next = 0; grid.textContent = "";
  document.getElementById("count").textContent = shown.length + " of " + DATA.length +
                                                 " photos";
  more();
}
document.querySelectorAll("input[name=f]").forEach(i => i.onchange = filter);
document.getElementById("heat").onchange = e =>
  document.body.classList.toggle("noheat", !e.target.checked);
new IntersectionObserver(es => { if (es[0].isIntersecting) more(); })
  .observe(document.getElementById("more"));
filter();
</script>
</body>
</html>
"""
