"""The package layout of docs/architecture.md: imports point one way, and the pipeline's functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pmdcompress"

# Lowest first.  A module may import its own layer's base modules and any layer below its own, never above;
# report and demix are peers that do not import each other; simulate (a side package) is above them so that
# nothing of the core can import it.
LAYERS = [
    {"_numba", "_package_version", "errors", "indexing", "options", "parallel", "progress", "formats"},
    {"io"},
    {"preprocess"},
    {"tiling"},
    {"solver"},
    {"store"},
    {"reconstruct"},
    {"report", "demix"},
    {"simulate"},
    {"pipeline"},
    {"cli"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
BASE = LAYERS[0]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        yield path, name, (name if is_package else name.rsplit(".", 1)[0])


def _imports(tree: ast.AST, package: str):
    """(line, absolute module) of every import of the project's own modules."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            if node.module:
                yield node.lineno, ".".join([*base, node.module])
            else:
                yield from ((node.lineno, ".".join([*base, a.name])) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pmdcompress."):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("pmdcompress."))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _from_the_root(module: str) -> bool:
    """Whether ``module`` (``pmdcompress.NAME``) names something of the root ``__init__``, not a module of its own."""
    parts = module.split(".")
    if len(parts) != 2 or parts[0] != "pmdcompress":
        return False
    return not ((PACKAGE / f"{parts[1]}.py").exists() or (PACKAGE / parts[1]).is_dir())


def test_imports_point_down_the_data_flow():
    against = []
    for path, name, package in _modules():
        mine = _layer(name)
        if mine is None:
            continue
        for line, target in _imports(ast.parse(path.read_text()), package):
            other = _layer(target)
            if _from_the_root(target):
                # A name of the package root (which re-exports the pipeline): the top of the flow.
                against.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {target} from the root")
                continue
            if other is None or other == mine or (mine in BASE and other in BASE):
                continue
            if RANK[other] >= RANK[mine]:
                against.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {target}")
    assert not against, "imports against the flow (see docs/architecture.md):\n" + "\n".join(against)


def _code_lines(fn: ast.FunctionDef) -> int:
    """Lines of a function without its docstring."""
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


@pytest.mark.parametrize("path", sorted((PACKAGE / "pipeline").glob("*.py")), ids=lambda p: p.name)
def test_pipeline_functions_are_short(path):
    long = [f"{fn.name} ({_code_lines(fn)} lines)" for fn in ast.walk(ast.parse(path.read_text()))
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and _code_lines(fn) > 100]
    assert not long, f"{path.name}: split into named stages: {', '.join(long)}"


def test_the_layout_check_sees_an_import_against_the_flow():
    # The check itself: a store module importing the pipeline is caught.
    tree = ast.parse("from ..pipeline.compress import compress\n")
    targets = [t for _, t in _imports(tree, "pmdcompress.store")]
    assert targets == ["pmdcompress.pipeline.compress"]
    assert RANK[_layer(targets[0])] > RANK["store"]
    # And a name taken from the package root (which loads the pipeline), but not a module of the package.
    [(_, target)] = _imports(ast.parse("from .. import __version__\n"), "pmdcompress.report")
    assert _from_the_root(target)
    [(_, target)] = _imports(ast.parse("from .. import checkpoints\n"), "pmdcompress.pipeline")
    assert not _from_the_root(target)


def test_every_public_name_is_listed_and_loads():
    import pmdcompress

    listed = dir(pmdcompress)
    for name in pmdcompress.__all__:
        assert name in listed
        assert getattr(pmdcompress, name) is not None
