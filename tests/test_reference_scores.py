"""The shipped model scores sample_photos/ as recorded in models/default.reference.json, within
its tolerance: a numpy or OpenCV that moves the scores (and with them every figure in the docs)
is named at once. After retraining the default model: benchmarks/reference_scores.py --write."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_model_scores_the_sample_photos_as_recorded(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from reference_scores import REFERENCE, sample_scores

    from flowersort.model.file import library_versions

    reference = json.loads(REFERENCE.read_text())
    scores = sample_scores()
    assert sorted(scores) == sorted(reference["scores"]), "sample_photos/ changed: rerecord"
    now = library_versions()
    changed = [
        f"{name} {now[name]} (recorded with {version})"
        for name, version in reference["versions"].items()
        if now.get(name) != version
    ]
    moved = {
        name: (reference["scores"][name], round(score, 6))
        for name, score in scores.items()
        if abs(score - reference["scores"][name]) > reference["tolerance"]
    }
    assert not moved, (
        f"the shipped model's scores moved by more than {reference['tolerance']} "
        f"(recorded, now): {moved}; libraries that differ from the record: "
        f"{', '.join(changed) or 'none (the model or the code changed)'}"
    )
