"""The layering of the code: the core (graph, runtime, io, zoo) never imports the tools or the CLI;
``kernels`` never imports ``nets``; every op the executor can meet is fully defined in the registry."""

import ast
import pathlib

import pytest

from nets.graph import ops

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = ("nets/graph", "nets/runtime", "nets/io", "nets/zoo", "nets/errors.py", "nets/api.py")
UPPER = ("nets.tools", "nets.cli")


def imports(path: pathlib.Path):
    """(module imported, enclosing function name or None) for every import in a file."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                out.extend((a.name, func) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                out.append((child.module, func))
                out.extend((f"{child.module}.{a.name}", func) for a in child.names)
            visit(child, name)
    visit(tree, None)
    return out


def files(*parts):
    for part in parts:
        p = ROOT / part
        yield from ([p] if p.is_file() else sorted(p.rglob("*.py")))


@pytest.mark.parametrize("path", list(files(*CORE)), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_tools_or_cli(path):
    convenience = path == ROOT / "nets/runtime/model.py"     # Model.profile: see the next test
    bad = [m for m, f in imports(path) if m.startswith(UPPER) and not (convenience and f == "profile")]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_model_reaches_tools_only_in_its_profile_method():
    """``Model.profile`` is a convenience over nets.tools.profile, imported when called."""
    uses = [(m, f) for m, f in imports(ROOT / "nets/runtime/model.py") if m.startswith(UPPER)]
    assert uses and all(f == "profile" for _, f in uses)


@pytest.mark.parametrize("path", list(files("kernels")), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernels_never_import_nets(path):
    assert [m for m, _ in imports(path) if m == "nets" or m.startswith("nets.")] == []


def test_every_executable_op_is_fully_defined():
    for name, d in ops.REGISTRY.items():
        assert d.name == name and d.infer_shape is not None and d.color.startswith("#")
        if name != "input":
            assert d.reference is not None, name
        if d.kernel is None and name != "input":
            assert d.lower is not None or name == "batch_norm", f"{name}: no kernel and no lowering"


def test_files_stay_readable():
    long = [(str(p.relative_to(ROOT)), n) for p in files("nets", "kernels")
            if (n := len(p.read_text().splitlines())) > 500]
    assert long == []
