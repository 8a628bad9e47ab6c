"""The floors of gmg_deploy (docs/architecture.md): a folder imports its own floor's modules and lower floors only.

Floor 0: the utilities ``errors``, ``io``, ``checks``. Floor 1: ``model`` (the network, config, checkpoints) and
``video`` (media I/O; it drives any object with the Forecaster's methods) - neither imports the other.
Floor 2: ``graph``, the graph contract (signature, typed metadata, graph index, the one ONNX loader).
Floor 3: ``frames``, the one frame reader of every command (video files through ``video``; a model's frame
shape asked of the contract). Then the stages: ``export`` -> ``evaluate`` -> ``precision`` -> ``trt`` ->
``runtime`` -> ``serve``, and ``cli`` on top. Why ``evaluate`` sits before ``precision``: calibration
(``precision.ranges``) rolls the FP32 step graph out in ONNX Runtime to record ranges, so it needs
``evaluate.rollout``; evaluation itself needs nothing from precision (FP16 emulation is applied by the caller,
e.g. ``gmg-compare``, before scoring). ``data`` (synthetic sequences for the demo) needs only ``model`` and is
used by the CLIs and tests. ``engine`` (and a few modules elsewhere) are old names kept as aliases.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path


import gmg_deploy

PKG = Path(gmg_deploy.__file__).parent
#: Floors 1 and up, lowest first; folders on one floor do not import each other.
FLOORS = [["model", "video"], ["graph"], ["frames"], ["export"], ["evaluate"], ["precision"], ["trt"], ["runtime"],
          ["serve"]]
ORDER = [f for floor in FLOORS for f in floor]
UTIL = {"errors", "io", "checks", "__init__"}
TOP = {"cli", "data"}
#: Old module names: each file only makes ``sys.modules[__name__]`` the module at its new home.
ALIAS_PACKAGES = {"engine"}
ALIAS_MODULES = {"export/metadata.py", "export/signature.py", "export/graph_index.py", "cli/engine_options.py"}


def floor_of(folder: str) -> int:
    return next(i + 1 for i, floor in enumerate(FLOORS) if folder in floor)


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


def _folder_files(folder: str):
    return [f for f in (PKG / folder).rglob("*.py") if str(f.relative_to(PKG)) not in ALIAS_MODULES]


def test_no_floor_imports_a_higher_floor():
    bad = []
    for folder in ORDER:
        allowed = {f for f in ORDER if floor_of(f) < floor_of(folder)} | {folder} | UTIL
        for f in _folder_files(folder):
            for mod in _imports(f) - allowed:
                bad.append(f"{f.relative_to(PKG)} (floor {floor_of(folder)}) imports gmg_deploy.{mod}"
                           + (f" (floor {floor_of(mod)})" if mod in ORDER else ""))
    assert bad == []


def test_every_folder_has_a_floor_and_says_which():
    """Each folder is on a floor (or is cli/data/an alias package), and its docstring names the floor."""
    folders = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(ORDER) | TOP | ALIAS_PACKAGES
    missing = [f for f in ORDER if f"Floor {floor_of(f)}" not in (ast.get_docstring(ast.parse(
        (PKG / f / "__init__.py").read_text())) or "")]
    assert missing == [], "these folders' __init__ docstrings do not name their floor"


_ALIAS = re.compile(r'^"""[^\n]*"""\nimport sys\n\nfrom (gmg_deploy[.\w]*) import (\w+) as _moved\n\n'
                    r"sys\.modules\[__name__\] = _moved\n$")


def test_old_module_names_are_only_aliases():
    """An old name is the new module itself (``sys.modules`` swap): no second copy of a class can exist."""
    import importlib

    olds = sorted(ALIAS_MODULES) + sorted(str(f.relative_to(PKG)) for p in ALIAS_PACKAGES
                                          for f in (PKG / p).glob("*.py") if f.name != "__init__.py")
    for rel in olds:
        m = _ALIAS.match((PKG / rel).read_text())
        assert m, f"{rel} is not a bare alias"
        old = importlib.import_module("gmg_deploy." + rel[:-3].replace("/", "."))
        assert old is importlib.import_module(f"{m.group(1)}.{m.group(2)}"), rel
    assert {p: _imports(PKG / p / "__init__.py") for p in ALIAS_PACKAGES} == {p: set() for p in ALIAS_PACKAGES}


def test_utilities_import_no_stage():
    for name in ("errors", "io", "checks"):
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


_DYNAMIC_IMPORTS = {"import_module", "__import__", "find_spec", "find_loader"}


def _is_trt(name: str) -> bool:
    return name == "tensorrt" or name.startswith("tensorrt.")


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _tensorrt_imports(tree: ast.Module) -> list[str]:
    """How a module imports tensorrt: ``import``/``from`` statements, and dynamic imports (``importlib``,
    ``__import__``, ``find_spec``) whose module name is the literal, or a name whose values can be seen: the
    strings of the enclosing function and of every statement in the module calling that function."""
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_trt(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _is_trt(node.module):
            found.append(node.module)
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname not in _DYNAMIC_IMPORTS:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                if isinstance(arg.value, str) and _is_trt(arg.value):
                    found.append(f"{fname}({arg.value!r})")
                continue
            seen = set()
            fn = node
            while fn in parents and not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                fn = parents[fn]
            scope = fn if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) else tree
            seen |= _strings(scope)
            if scope is not tree:
                for call in ast.walk(tree):
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == scope.name:
                        stmt = call
                        while stmt in parents and not isinstance(stmt, ast.stmt):
                            stmt = parents[stmt]
                        seen |= _strings(stmt)
            if any(_is_trt(v) for v in seen):
                found.append(f"{fname}(<name that can be 'tensorrt'>)")
    return found


def test_tensorrt_is_imported_by_one_module_only():
    """``trt/trt_import.py`` holds the one ``import tensorrt`` (static or through importlib); building
    (trt/trt_engine.py) and running (runtime/trt_backend.py) engines call its ``import_tensorrt``."""
    users = {str(f.relative_to(PKG)): _tensorrt_imports(ast.parse(f.read_text())) for f in PKG.rglob("*.py")}
    assert {f for f, how in users.items() if how} == {"trt/trt_import.py"}


def test_the_tensorrt_import_check_sees_importlib():
    """The check above catches what ``cli/environment_report.py`` once did: tensorrt through ``importlib``."""
    sneaky = (
        "import importlib\n"
        "def _version(module):\n"
        "    return importlib.import_module(module)\n"
        "versions = {k: _version(k) for k in ('torch', 'tensorrt')}\n"
    )
    assert _tensorrt_imports(ast.parse(sneaky)) == ["import_module(<name that can be 'tensorrt'>)"]
    assert _tensorrt_imports(ast.parse("import importlib.util\nimportlib.util.find_spec('tensorrt')\n")) == [
        "find_spec('tensorrt')"]
    assert _tensorrt_imports(ast.parse("__import__('tensorrt.plugin')\n")) == ["__import__('tensorrt.plugin')"]
    assert _tensorrt_imports(ast.parse("from tensorrt import Logger\n")) == ["tensorrt"]
    harmless = "import importlib\ndef v(m):\n    return importlib.import_module(m)\nx = [v(k) for k in ('onnx',)]\n"
    assert _tensorrt_imports(ast.parse(harmless)) == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """Every gmg_deploy module ``path`` imports, at the top or inside a function (`from a import b`: a.b when a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmg_deploy"):
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("gmg_deploy")]
        for n in names:
            if n in known:
                out.add(n)
                break
    return out


def import_cycles() -> list[list[str]]:
    """The strongly connected components (size > 1) of the module import graph (Tarjan)."""
    files = {_module_name(f): f for f in PKG.rglob("*.py")}
    known = set(files)
    graph = {m: _module_imports(f, known) - {m} for m, f in files.items()}
    # a package's __init__ importing its own submodules is how re-exports work, not a circle
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_between_modules():
    """No two modules import each other, directly or through others (function-level imports included)."""
    assert import_cycles() == []


def test_no_function_longer_than_60_lines():
    """Every function in gmg_deploy/ fits in 60 lines (its def line to its last line; decorators not counted)."""
    long = []
    for f in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{f.relative_to(PKG)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
