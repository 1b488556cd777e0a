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
    rows = re.findall(r"^\| `([\w.]+)` \| ([\w]+) \|", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def module_name(path: Path) -> str:
    """A file's module, dotted from the package: `sorting.sorter`, `cli`, `__init__`."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def modules() -> list[Path]:
    """The package's modules, a floor's `__init__` aside (it holds only its docstring)."""
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent == PACKAGE or path.name != "__init__.py"
    ]


def imports(path: Path) -> set[str]:
    """The flowersort modules a file imports, at any depth (inside functions too), relative
    imports included; a floor's package itself (`import flowersort.sorting`) counts as a
    module of that floor (`sorting.__init__`)."""
    known = {module_name(p) for p in modules()}
    floors = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    here = module_name(path).split(".")[:-1]  # the package the file is in
    found = set()

    def add(dotted: str, names: list[str]) -> None:
        inner = [f"{dotted}.{n}" if dotted else n for n in names]
        hits = {name for name in inner if name in known}
        hits |= {f"{name}.__init__" for name in inner if name in floors}
        if hits:
            found.update(hits)
        elif dotted in known:
            found.add(dotted)
        else:
            found.add(f"{dotted}.__init__" if dotted in floors else "__init__")

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # from . or .. import
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            add(
                ".".join(base + ([node.module] if node.module else [])),
                [a.name for a in node.names],
            )
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "flowersort" or node.module.startswith("flowersort."):
                add(
                    node.module.removeprefix("flowersort").lstrip("."), [a.name for a in node.names]
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flowersort."):
                    add(alias.name.removeprefix("flowersort."), [])
    return found


def layer_of(module: str, mapping: dict[str, str]) -> str:
    """A module's floor: from the map, or a floor's own package (`sorting.__init__`)."""
    return mapping.get(module) or module.split(".")[0]


def edges() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in modules()}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports that go to a layer above the importer's."""
    mapping, rank = module_map(), layers()
    return [
        f"{module} ({mapping[module]}) imports {target} ({layer_of(target, mapping)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if rank[layer_of(target, mapping)] < rank[mapping[module]]
    ]


def test_every_module_is_on_the_map_and_every_layer_is_known():
    mapping, rank = module_map(), layers()
    assert sorted(mapping) == sorted(module_name(p) for p in modules())
    assert set(mapping.values()) <= set(rank), set(mapping.values()) - set(rank)
    assert rank["cli"] == 0 and max(rank.values()) == rank["base"]


def test_a_floors_package_holds_the_modules_of_that_floor_and_nothing_else():
    for module, layer in module_map().items():
        if "." in module:
            assert module.split(".")[0] == layer, f"{module} is on floor {layer}"
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), (
            f"{init}: a docstring only"
        )


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward(edges()) == []


@pytest.mark.parametrize(
    "module, target",
    [
        ("safefs.transfer", "model.file"),
        ("model.file", "sorting.sorter"),
        ("base.errors", "cli.app"),
        ("photos.archive", "model.features"),
    ],
)
def test_an_import_upward_is_caught(module, target):
    graph = edges()
    graph[module] = graph[module] | {target}
    assert upward(graph) == [
        f"{module} ({module_map()[module]}) imports {target} ({module_map()[target]})"
    ]


def test_imports_inside_functions_count():
    assert "sorting.sorter" in imports(
        PACKAGE / "cli" / "classify.py"
    )  # cli imports sorter in its commands


@pytest.mark.parametrize(
    "module, not_loaded",
    [
        # sorting does not load all of training
        ("flowersort.sorting.sorter", "flowersort.training.train"),
        # every command loads cli's defaults (TrainConfig), not the training itself
        ("flowersort.cli.app", "flowersort.training.train"),
        # a file's sha256 needs no model code
        ("flowersort.scoring.cache", "flowersort.model.file"),
        # nor does the umask need the moves
        ("flowersort.model.file", "flowersort.safefs"),
        # only training on many cores
        ("flowersort.training.train", "multiprocessing.managers"),
        # only a tag written (saxutils loads it)
        ("flowersort.photos.xmp_write", "urllib.request"),
    ],
)
def test_importing_a_module_loads_none_it_does_not_need(module, not_loaded):
    code = f"import sys, {module}; print({not_loaded!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    "line, target",
    [
        ("import flowersort.sorting", "sorting.__init__"),
        ("from flowersort import sorting", "sorting.__init__"),
        ("from ..sorting import journal", "sorting.journal"),
        ("from ..sorting.journal import Journal", "sorting.journal"),
        ("from . import names", "safefs.names"),
    ],
)
def test_every_form_of_import_is_seen(line, target, tmp_path, monkeypatch):
    """An import of a floor's package, or a relative one, is an import of that floor."""
    fake = tmp_path / "flowersort"
    (fake / "safefs").mkdir(parents=True)
    for p in modules():  # the same package layout, one module with the line added
        dest = fake / p.relative_to(PACKAGE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("")
    for init in PACKAGE.glob("*/__init__.py"):
        (fake / init.relative_to(PACKAGE)).write_text("")
    (fake / "safefs" / "seams.py").write_text(line + "\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert target in imports(fake / "safefs" / "seams.py")
