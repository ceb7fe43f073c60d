"""The package's layers, read from the import statements: nothing imports a layer above its own.

    ground floor (data_row, text, stages, losses, metrics, rewards, reporting)
    < modeling (and tiny and tiny_processor, which build tiny models) < trainers < scripts < apps, cli

`data_prep` builds data sets with the ground floor only (the row and the text conventions). Below the applications
nothing imports `data_prep`; the applications use it to build data (the quickstart) and read annotation dumps (the
CoT generator), while the row's decoding lives in `aurora_trl.data_row` alone.
"""

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["modeling", "trainers", "scripts", "apps"]  # bottom to top, above the ground floor
# The ground-floor modules that data_prep may use.
DATA_PREP_MAY_IMPORT = {"aurora_trl.data_row", "aurora_trl.text"}
# Top-level modules that are not on the ground floor, with the layer they sit on.
TOP_LEVEL = {"tiny": "modeling", "tiny_processor": "modeling", "cli": "apps"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def layer(module: str) -> int:
    """-1 outside the package, 0 for the ground floor, 1.. for the layers above it."""
    parts = module.split(".")
    if parts[0] != "aurora_trl" or len(parts) == 1:
        return -1
    name = TOP_LEVEL.get(parts[1], parts[1])
    return LAYERS.index(name) + 1 if name in LAYERS else 0


PACKAGE_FILES = sorted((ROOT / "aurora_trl").rglob("*.py"))


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
    upward = sorted(m for m in imported_modules(path) if layer(m) > own)
    assert not upward, f"{path.relative_to(ROOT)} imports from a higher layer: {upward}"
    if own < layer("aurora_trl.apps"):
        assert not any(m.split(".")[0] == "data_prep" for m in imported_modules(path))


@pytest.mark.parametrize("path", sorted((ROOT / "data_prep").rglob("*.py")), ids=lambda p: p.name)
def test_data_prep_uses_only_the_ground_floor(path):
    package_imports = {m for m in imported_modules(path) if m.split(".")[0] == "aurora_trl"}
    modules = {".".join(m.split(".")[:2]) for m in package_imports}
    assert modules <= DATA_PREP_MAY_IMPORT | {"aurora_trl"}, sorted(modules)


def test_the_layer_reader_sees_upward_imports():
    assert layer("aurora_trl.trainers.collator") > layer("aurora_trl.modeling.sam") > layer("aurora_trl.text")
    assert "aurora_trl.modeling.tokens.pad_sequences" in imported_modules(ROOT / "aurora_trl/trainers/collator.py")
    assert "aurora_trl.modeling.tokens" in imported_modules(ROOT / "aurora_trl/modeling/inference.py")
