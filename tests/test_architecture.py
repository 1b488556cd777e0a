"""docs/architecture.md's module map is the import rule: each module imports only from its
own layer or the layers below it. A module importing upward, or one missing from the map,
fails here."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowersort"
DOC = ROOT / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Each layer's rank, top (cli) = 0, from the doc's line `cli  >  sorting, ...`."""
    line = next(x for x in DOC.read_text().splitlines() if x.strip().startswith("cli  >"))
    return {
        name.strip(): rank
        for rank, group in enumerate(line.split(">"))
        for name in group.split(",")
    }


def module_map() -> dict[str, str]:
    """module -> layer, from the doc's table rows | `module` | layer | job |."""
    rows = re.findall(r"^\| `([\w]+)` \| ([\w]+) \|", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def imports(path: Path) -> set[str]:
    """The flowersort modules a file imports, at any depth (inside functions too)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "flowersort":  # from flowersort import safefs
                found |= {a.name for a in node.names if a.name in modules} or {"__init__"}
            elif node.module.startswith("flowersort."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flowersort."):
                    found.add(alias.name.split(".")[1])
    return found


def edges() -> dict[str, set[str]]:
    return {path.stem: imports(path) for path in sorted(PACKAGE.glob("*.py"))}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports that go to a layer above the importer's."""
    mapping, rank = module_map(), layers()
    return [
        f"{module} ({mapping[module]}) imports {target} ({mapping[target]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if rank[mapping[target]] < rank[mapping[module]]
    ]


def test_every_module_is_on_the_map_and_every_layer_is_known():
    mapping, rank = module_map(), layers()
    assert sorted(mapping) == sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(mapping.values()) <= set(rank), set(mapping.values()) - set(rank)
    assert rank["cli"] == 0 and max(rank.values()) == rank["base"]


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward(edges()) == []


@pytest.mark.parametrize(
    "module, target",
    [("safefs", "model"), ("model", "sorter"), ("errors", "cli"), ("archive", "features")],
)
def test_an_import_upward_is_caught(module, target):
    graph = edges()
    graph[module] = graph[module] | {target}
    assert upward(graph) == [
        f"{module} ({module_map()[module]}) imports {target} ({module_map()[target]})"
    ]


def test_imports_inside_functions_count():
    assert "sorter" in imports(PACKAGE / "cli.py")  # cli imports sorter in its commands


@pytest.mark.parametrize(
    "module, not_loaded",
    [
        ("flowersort.sorter", "flowersort.train"),  # sorting does not load all of training
        ("flowersort.cache", "flowersort.model"),  # a file's sha256 needs no model code
        ("flowersort.model", "flowersort.safefs"),  # nor does the umask need the moves
        ("flowersort.train", "multiprocessing.managers"),  # only training on many cores
        ("flowersort.xmp", "urllib.request"),  # only a tag written (saxutils loads it)
    ],
)
def test_importing_a_module_loads_none_it_does_not_need(module, not_loaded):
    code = f"import sys, {module}; print({not_loaded!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
