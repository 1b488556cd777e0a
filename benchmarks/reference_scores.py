"""The shipped model's scores of sample_photos/, and the library versions they were measured
with, written to models/default.reference.json (run it after retraining the default model):

    python benchmarks/reference_scores.py          # print today's scores beside the recorded ones
    python benchmarks/reference_scores.py --write  # record them

tests/test_reference_scores.py checks every run of the suite against that file, so a numpy or
OpenCV that moves the shipped model's scores is seen at once."""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowersort.model.file import default_model_path, library_versions, load_model  # noqa: E402
from flowersort.photos.archive import walk  # noqa: E402
from flowersort.scoring.pipeline import score_photos  # noqa: E402

REFERENCE = ROOT / "models" / "default.reference.json"
SAMPLES = ROOT / "sample_photos"


def sample_scores() -> dict[str, float]:
    """Each sample photo's score by the shipped model, keyed by its file name."""
    model = load_model(default_model_path())
    photos = sorted(walk(SAMPLES))
    scored = score_photos(model, photos, workers=1)
    return {Path(s.path).name: s.score for s in scored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record today's scores")
    args = parser.parse_args()
    scores = sample_scores()
    recorded = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {"scores": {}}
    print(f"today: {library_versions()}; recorded: {recorded.get('versions')}")
    for name, score in scores.items():
        before = recorded["scores"].get(name)
        moved = "" if before is None else f"  recorded {before:.6f}  moved {score - before:+.6f}"
        print(f"{name:45s} {score:.6f}{moved}")
    if args.write:
        reference = {
            "versions": library_versions(),
            "tolerance": recorded.get("tolerance", 0.001),
            "scores": {name: round(score, 6) for name, score in scores.items()},
        }
        REFERENCE.write_text(json.dumps(reference, indent=2) + "\n")
        print(f"written: {REFERENCE}")


if __name__ == "__main__":
    main()
