import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_clean(args):
    ruff = shutil.which("ruff") or str(Path(__import__("sys").executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    proc = subprocess.run(
        [ruff, *args, "flowersort", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci_line = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"    {ci_line}\n" in readme


def test_ci_lowest_versions_are_the_lower_bounds_pyproject_declares():
    """.ci/run's second run pins each package at its lower bound: a bound raised in
    pyproject.toml without its pin (or a pin for a package with no bound) is caught here."""
    tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [
        dep for extra in project["optional-dependencies"].values() for dep in extra
    ]
    bounds: dict[str, set[str]] = {}
    for dep in declared:
        name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", dep).groups()
        bounds.setdefault(name.lower(), set()).add(bound)
    pins = {}
    for line in (ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    assert pins.keys() == bounds.keys()
    for name, declared_bounds in bounds.items():
        pin = [int(part) for part in pins[name].split(".")]
        for bound in declared_bounds:  # the same bound wherever the package is declared
            parts = [int(part) for part in bound.split(".")]
            assert pin[: len(parts)] == parts, f"{name}: pinned {pins[name]}, bound >={bound}"


def readme_section_block(heading: str) -> list[str]:
    """The first indented block of lines under a README heading."""
    text = (ROOT / "README.md").read_text().split(f"\n## {heading}\n", 1)[1]
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def test_readme_use_lines_work_as_typed_after_the_set_up_line():
    """A new user types "Set up", then "Use": flowersort must be on PATH, and the classify
    lines must use the model the block trained (not silently the shipped one)."""
    import shlex

    (set_up,) = readme_section_block("Set up")[:1]
    venv = shlex.split(set_up)[shlex.split(set_up).index("venv") + 2]
    use = readme_section_block("Use")
    assert use[0] == f". {venv}/bin/activate"
    trained = None
    for line in use[1:]:
        words = shlex.split(line)
        assert words[0] == "flowersort", line
        model = words[words.index("--model") + 1] if "--model" in words else None
        if words[1] == "train":
            assert model and (trained != model or "--force" in words), line  # it exists now
            trained = model
        elif words[1] in ("classify", "evaluate"):
            assert model == trained, line


def test_readme_tryout_of_train_on_the_sample_photos_works_as_typed(tmp_path, monkeypatch):
    import shlex

    from tests.conftest import run

    readme = (ROOT / "README.md").read_text()
    block = readme.split("not for sorting an archive):\n\n", 1)[1].split("\n\n", 1)[0]
    monkeypatch.chdir(ROOT)  # a checkout, as after "Set up"
    for line in block.splitlines():
        words = shlex.split(line.replace("/tmp/sample.npz", str(tmp_path / "sample.npz")))
        assert words[0] == "flowersort"
        result = run(*words[1:], "--workers", 1)
        assert result.exit_code == 0, (line, result.output)


def test_mypy_clean():
    """mypy flowersort, with the settings of pyproject.toml ([tool.mypy]): no error."""
    pytest.importorskip("mypy", reason="mypy is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("Success: no issues found")
