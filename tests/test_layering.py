"""Data flows model -> export -> calibration -> engine (build) -> runtime -> video; cli sits on top.

No stage imports a later one. ``errors``, ``io`` and ``metrics`` are shared utilities; ``data`` (synthetic
sequences for the demo) may be used by the CLIs and tests only.
"""
from __future__ import annotations

import ast
from pathlib import Path

import gmg_deploy

PKG = Path(gmg_deploy.__file__).parent
ORDER = ["model", "export", "calibration", "engine", "runtime", "video"]
UTIL = {"errors", "io", "metrics", "__init__"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmg_deploy."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gmg_deploy."):
                    out.add(a.name.split(".")[1])
    return out


def test_no_stage_imports_a_later_stage():
    bad = []
    for i, stage in enumerate(ORDER):
        allowed = set(ORDER[: i + 1]) | UTIL
        for f in (PKG / stage).rglob("*.py"):
            for mod in _imports(f) - allowed:
                bad.append(f"{f.relative_to(PKG)} imports gmg_deploy.{mod}")
    assert bad == []


def test_utilities_import_no_stage():
    for name in ("errors", "io", "metrics"):
        assert _imports(PKG / f"{name}.py") <= UTIL, name


def test_pyav_is_imported_in_one_module():
    """``video/avlib.py`` imports PyAV (lazily, with the [video] extra hint); nothing else does."""
    users = set()
    for f in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n == "av" or n.startswith("av.") for n in names):
                users.add(str(f.relative_to(PKG)))
    assert users == {"video/avlib.py"}


def test_data_generator_needs_only_the_model():
    for f in (PKG / "data").rglob("*.py"):
        assert _imports(f) <= {"data", "model"} | UTIL, f.name


def test_tensorrt_is_called_from_two_thin_modules_only():
    """Building (engine/trt_engine.py) and running (runtime/trt_backend.py) engines: nothing else imports it."""
    users = set()
    for f in PKG.rglob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n == "tensorrt" or n.startswith("tensorrt.") for n in names):
                users.add(str(f.relative_to(PKG)))
    assert users == {"engine/trt_engine.py", "runtime/trt_backend.py"}
