"""Every TensorRT name the package uses exists in the TensorRT Python API, as the ``tensorrt-stubs`` .pyi files state it.

Both sides are read with ``ast``, nothing is imported: the stubs give the module's names and each class's members
(with inheritance and method return annotations); our modules are scanned for ``trt.X`` chains (``trt`` is what
``import_tensorrt`` returns, by the package's convention) and for attributes of objects whose class is known:
returned by a ``trt.Class(...)`` call, by a stub method with a return annotation, or named in :data:`PARAMETERS`.

This proves the names exist in TensorRT 10.13's bindings (the stubs' version); not that the calls' arguments,
types or semantics are right, nor anything about TensorRT 11 (no 11.x stubs are published).

The stubs: ``pip install --no-deps --target DIR tensorrt-stubs==10.13.0.35.1`` and ``GMG_TRT_STUBS=DIR`` (the README's set-up uses ``DIR=.trt-stubs`` in the checkout, found without the variable; a plain
``pip install tensorrt-stubs`` pulls the uninstallable ``tensorrt`` and leaves a ``tensorrt`` namespace
package), or a normal install of the distribution.
"""
from __future__ import annotations

import ast
import os
import re
import textwrap
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

import gmg_deploy

PKG = Path(gmg_deploy.__file__).parent
#: Parameters and attributes holding TensorRT objects that no visible assignment types: name -> stub class.
PARAMETERS = {"engine": "ICudaEngine", "context": "IExecutionContext", "network": "INetworkDefinition",
              "builder": "Builder", "config": "IBuilderConfig", "parser": "OnnxParser"}
#: The modules that call TensorRT (the ones that get ``trt`` from ``import_tensorrt`` or as a parameter).
TRT_MODULES = ("trt/trt_engine.py", "runtime/trt_backend.py", "trt/trt_import.py")


#: Where the README's set-up command puts the stubs (`pip install --no-deps --target .trt-stubs ...`).
REPO_STUBS = Path(__file__).resolve().parents[1] / ".trt-stubs"


def _stubs_dir() -> Path | None:
    env = os.environ.get("GMG_TRT_STUBS")
    if env:
        return Path(env)
    if (REPO_STUBS / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        return REPO_STUBS
    try:
        files = metadata.files("tensorrt-stubs") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith("tensorrt_bindings/tensorrt.pyi"):
            return Path(f.locate()).parent.parent
    return None


@dataclass
class StubClass:
    bases: list[str]
    members: set[str] = field(default_factory=set)
    returns: dict[str, str] = field(default_factory=dict)  # method/property -> class name it returns


@dataclass
class StubAPI:
    top: set[str]
    classes: dict[str, StubClass]

    def lookup(self, cls: str, name: str, _seen: frozenset = frozenset()) -> tuple[bool, str | None]:
        """(does ``cls`` have member ``name``, the stub class it returns if known), through the bases."""
        c = self.classes.get(cls)
        if c is None or cls in _seen:
            return False, None
        if name in c.members:
            ret = c.returns.get(name)
            if ret is None and f"{cls}.{name}" in self.classes:
                ret = f"{cls}.{name}"  # a nested class (an enum) is a member and a class
            return True, ret
        for b in c.bases:
            ok, ret = self.lookup(b, name, _seen | {cls})
            if ok:
                return ok, ret
        return False, None


def _annotation_class(node: ast.AST | None, classes: set[str]) -> str | None:
    if node is None:
        return None
    text = ast.unparse(node).strip("'\"")
    for part in re.split(r"[\[\]|, ]+", text.replace("typing.Optional", "")):
        if part in classes:
            return part
    return None


_DEF = re.compile(r"^(\s*def\s+\w+)\(.*\)(\s*->.*:\s*)$")


def parse_tolerant(text: str) -> ast.Module:
    """``ast.parse``, repairing the ``def`` lines the stub generator wrote invalid (a parameter without a
    default after one with a default): their parameters become ``(self, *args, **kwargs)``; names and return
    annotations are kept. Any other syntax error is raised."""
    lines = text.splitlines()
    for _ in range(len(lines)):
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError as e:
            i = (e.lineno or 0) - 1
            m = _DEF.match(lines[i]) if 0 <= i < len(lines) else None
            if m is None:
                raise
            lines[i] = f"{m.group(1)}(self, *args, **kwargs){m.group(2)}"
    raise AssertionError("unreachable")


def parse_stubs(root: Path) -> StubAPI:
    bindings = parse_tolerant((root / "tensorrt_bindings" / "tensorrt.pyi").read_text())
    classes: dict[str, StubClass] = {}
    pending: list[tuple[str, ast.ClassDef]] = []

    def collect(node: ast.ClassDef, prefix: str) -> None:
        name = prefix + node.name
        classes[name] = StubClass([ast.unparse(b).split(".")[-1] for b in node.bases])
        pending.append((name, node))
        for item in node.body:
            if isinstance(item, ast.ClassDef):
                collect(item, name + ".")

    for node in bindings.body:
        if isinstance(node, ast.ClassDef):
            collect(node, "")
    names = set(classes)
    for name, node in pending:
        c = classes[name]
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                c.members.add(item.name)
                ret = _annotation_class(item.returns, names)
                if ret and item.name not in c.returns:
                    c.returns[item.name] = ret
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                c.members.add(item.target.id)
                ret = _annotation_class(item.annotation, names)
                if ret:
                    c.returns.setdefault(item.target.id, ret)
            elif isinstance(item, ast.Assign):
                c.members.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif isinstance(item, ast.ClassDef):
                c.members.add(item.name)
    top = set()
    for node in parse_tolerant((root / "tensorrt" / "__init__.pyi").read_text()).body:
        if isinstance(node, ast.ImportFrom):
            top.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
        elif isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top.add(node.name)
    return StubAPI(top, classes)


def _target_key(node: ast.AST) -> str | None:
    """``x`` -> "x"; ``self._engine`` -> "self._engine"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


class UsageChecker:
    """Walk a module in source order, typing names from assignments, and check every TensorRT attribute."""

    def __init__(self, api: StubAPI, where: str):
        self.api, self.where = api, where
        self.env: dict[str, str] = {}
        self.checked: set[str] = set()
        self.missing: list[str] = []

    def type_of(self, node: ast.AST) -> str | None:
        """"trt" for the tensorrt module, a stub class name, or None (not a TensorRT object)."""
        key = _target_key(node)
        if isinstance(node, ast.Name) and node.id == "trt":
            return "trt"
        if key is not None and key in self.env:
            return self.env[key]
        if isinstance(node, ast.Name) and node.id in PARAMETERS:
            return PARAMETERS[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            bare = node.attr.lstrip("_")
            if bare in PARAMETERS:
                return PARAMETERS[bare]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "map" and node.args:
                return self.type_of(node.args[0]) and self._returns(node.args[0])
            if isinstance(f, ast.Name) and f.id == "import_tensorrt":
                return "trt"
            return self._returns(f)
        if isinstance(node, ast.Attribute):
            return self._returns(node)
        return None

    def _returns(self, node: ast.AST) -> str | None:
        if not isinstance(node, ast.Attribute):
            return None
        owner = self.type_of(node.value)
        if owner == "trt":
            return node.attr if node.attr in self.api.classes else None
        if owner is None:
            return None
        return self.api.lookup(owner, node.attr)[1]

    def check_attribute(self, node: ast.Attribute) -> None:
        owner = self.type_of(node.value)
        if owner is None:
            return
        if owner == "trt":
            ok = node.attr in self.api.top
            label = f"trt.{node.attr}"
        else:
            ok = self.api.lookup(owner, node.attr)[0]
            label = f"{owner}.{node.attr}"
        self.checked.add(label)
        if not ok:
            self.missing.append(f"{self.where}:{node.lineno}: {label}")

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            saved = dict(self.env)
            for stmt in node.body:
                self.visit(stmt)
            self.env = {k: v for k, v in self.env.items() if k.startswith("self.")} | saved
            return
        if isinstance(node, ast.For):
            self.visit(node.iter)
            t, key = self.type_of(node.iter), _target_key(node.target)
            if key and t and t != "trt":
                self.env[key] = t
            for stmt in node.body + node.orelse:
                self.visit(stmt)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in node.generators:  # the loop variables first: they type the element expression
                self.visit(gen.iter)
                t, key = self.type_of(gen.iter), _target_key(gen.target)
                if key and t and t != "trt":
                    self.env[key] = t
                for cond in gen.ifs:
                    self.visit(cond)
            for part in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]):
                self.visit(part)
            return
        for child in ast.iter_child_nodes(node):
            self.visit(child)
        if isinstance(node, ast.Attribute):
            self.check_attribute(node)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            t = self.type_of(node.value)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                key = _target_key(target)
                if key and t:
                    self.env[key] = t


def check_source(api: StubAPI, source: str, where: str) -> UsageChecker:
    checker = UsageChecker(api, where)
    checker.visit(ast.parse(source))
    return checker


@pytest.fixture(scope="module")
def api() -> StubAPI:
    root = _stubs_dir()
    if root is None or not (root / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        pytest.skip("tensorrt-stubs not found: pip install --no-deps --target .trt-stubs tensorrt-stubs==10.13.0.35.1 "
                    "(or another DIR and GMG_TRT_STUBS=DIR)")
    return parse_stubs(root)


def test_the_trt_modules_are_the_ones_that_touch_tensorrt():
    """Every module that gets ``trt`` (``import_tensorrt`` or a ``trt`` parameter) is scanned below."""
    users = set()
    for f in PKG.rglob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "trt" or isinstance(node, ast.arg) and node.arg == "trt":
                users.add(str(f.relative_to(PKG)))
                break
    assert users <= set(TRT_MODULES), users - set(TRT_MODULES)
    for f in TRT_MODULES:
        for node in ast.walk(ast.parse((PKG / f).read_text())):  # import_tensorrt's result is always called trt
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    getattr(node.value.func, "id", None) == "import_tensorrt":
                assert [_target_key(t) for t in node.targets] == ["trt"], f"{f}:{node.lineno}"


def test_every_tensorrt_name_we_use_exists_in_the_stubs(api):
    checked, missing = set(), []
    for f in TRT_MODULES:
        c = check_source(api, (PKG / f).read_text(), f)
        checked |= c.checked
        missing += c.missing
    assert missing == []
    # the scan sees the calls that matter (so it is not vacuous): build (network, parse, config and engine
    # bytes are Polygraphy's loaders, checked below), deserialise, run
    must = {"trt.Logger", "trt.Runtime", "trt.NetworkDefinitionCreationFlag", "trt.MemoryPoolType",
            "trt.TensorIOMode", "trt.__version__", "IBuilderConfig.get_timing_cache", "ITimingCache.serialize",
            "INetworkDefinition.get_input", "INetworkDefinition.num_outputs", "ITensor.shape", "ITensor.dtype",
            "Runtime.deserialize_cuda_engine", "ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors",
            "ICudaEngine.get_tensor_profile_shape", "IExecutionContext.set_input_shape",
            "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3",
            "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "MemoryPoolType.WORKSPACE", "Logger.WARNING",
            "TensorIOMode.INPUT"}
    assert must <= checked, sorted(must - checked)


def test_the_checker_flags_a_misspelt_or_removed_name(api):
    src = textwrap.dedent("""
        def build(path):
            trt = import_tensorrt("x")
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            network = builder.create_netwrok(0)
            config = builder.create_builder_config()
            config.set_flag(trt.BuilderFlag.FP16)
            config.max_workspace_size = 1
            prof = builder.create_optimization_profile()
            prof.set_shapes("x", 1, 2, 3)
            engine = trt.Runtime(None).deserialize_cuda_engine(b"")
            engine.get_binding_index("frame")
            trt.NoSuchThing
    """)
    c = check_source(api, src, "t.py")
    assert [m.split(": ")[1] for m in c.missing] == [
        "Builder.create_netwrok", "IBuilderConfig.max_workspace_size", "IOptimizationProfile.set_shapes",
        "ICudaEngine.get_binding_index", "trt.NoSuchThing"]
    assert {"IBuilderConfig.set_flag", "BuilderFlag.FP16"} <= c.checked  # exist in 10.13 (gone in 11)


def test_the_parameter_table_agrees_with_the_stubs(api):
    """The explicit receiver table names classes the stubs have; where a stub method returns that kind of
    object, it returns the class the table says."""
    assert all(cls in api.classes for cls in PARAMETERS.values())
    assert api.lookup("Builder", "create_network")[1] == PARAMETERS["network"]
    assert api.lookup("Builder", "create_builder_config")[1] == PARAMETERS["config"]
    assert api.lookup("Runtime", "deserialize_cuda_engine")[1] == PARAMETERS["engine"]
    assert api.lookup("ICudaEngine", "create_execution_context")[1] == PARAMETERS["context"]


def test_stubs_on_the_path_are_not_taken_for_tensorrt(tmp_path):
    """A directory holding only ``tensorrt/__init__.pyi`` imports as a namespace package ``tensorrt``: the
    package says TensorRT is not installed (instead of failing on its missing ``__version__``)."""
    import subprocess
    import sys

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("__version__: str = '10.13.0.35'\n")
    code = ("from gmg_deploy.trt.trt_import import import_tensorrt, tensorrt_version\n"
            "import tensorrt\nassert not hasattr(tensorrt, '__version__')\n"
            "assert tensorrt_version() is None\n"
            "try:\n    import_tensorrt('building')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PKG.parent)])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("InputError building needs the 'tensorrt' Python package, which is not installed")


def test_the_polygraphy_build_loaders_are_assembled_without_tensorrt(tmp_path):
    """gmg-build's network/config/engine come from Polygraphy's lazy loaders: assembled here for real (only
    calling them needs TensorRT), with our profile, strongly typed flag, workspace limit and timing cache."""
    pytest.importorskip("polygraphy")
    from polygraphy.backend.trt import CreateConfig, NetworkFromOnnxPath

    from gmg_deploy.trt.trt_engine import build_loaders, polygraphy_profile

    shapes = {"frame": ((1, 1, 32, 32), (4, 1, 32, 32), (8, 1, 32, 32)),
              "state_in.h.0": ((1, 128, 4, 4), (4, 128, 4, 4), (8, 128, 4, 4))}
    prof = polygraphy_profile(shapes)
    assert list(prof) == list(shapes)
    assert all((prof[k].min, prof[k].opt, prof[k].max) == v for k, v in shapes.items())
    cache = tmp_path / "timing.cache"
    net, cfg = build_loaders(tmp_path / "m.onnx", shapes, strongly_typed=True, workspace_pool="WORKSPACE",
                             workspace_mib=64, timing_cache=cache)
    assert isinstance(net, NetworkFromOnnxPath) and isinstance(cfg, CreateConfig)
    assert net.path == str(tmp_path / "m.onnx") and net.strongly_typed is True
    assert cfg.memory_pool_limits == {"WORKSPACE": 64 << 20} and cfg.timing_cache_path is None  # no file yet
    (got,) = cfg.profiles
    assert {k: (v.min, v.opt, v.max) for k, v in got.items()} == shapes
    cache.write_bytes(b"x")
    net, cfg = build_loaders("m.onnx", shapes, strongly_typed=False, timing_cache=cache)
    assert net.strongly_typed is False and cfg.memory_pool_limits is None and cfg.timing_cache_path == str(cache)
