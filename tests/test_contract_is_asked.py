"""Every stage asks the graph contract (gmg_deploy/graph/) instead of rebuilding it: checked on the source.

Outside ``graph/``: no ``onnx.load`` (the one loader is ``graph.onnx_file.load_onnx``), no call of the dict
functions ``metadata_from_proto``/``read_metadata``/``build_metadata`` (ask ``GraphMetadata``), no
``meta["config"]``/``meta.get("precision")``-style reads of a metadata dict, and no import of the old
``export.metadata``/``export.signature``/``export.graph_index`` aliases.
"""
from __future__ import annotations

import ast
from pathlib import Path

import gmg_deploy

PKG = Path(gmg_deploy.__file__).parent
#: Old module names kept as aliases of their new home (nothing inside the package may use them).
ALIASES = {"export/metadata.py", "export/signature.py", "export/graph_index.py"}
#: Runs inside Triton's Python backend, where gmg_deploy may not be importable: it reads its own JSON.
STANDALONE = {"serve/python_model.py"}
#: Floors below the contract: they cannot ask it (video's Preprocessor.for_metadata reads the two normalisation
#: keys of the mapping it is given).
BELOW = ("model/", "video/")
#: Public functions that also take a bare mapping holding only what they need (their tests pass one).
BARE_MAPPINGS = {("trt/profile.py", "batch"): "batch_range({'batch': N}, ...)",
                 ("evaluate/rollout.py", "config"): "sequence_frames({'config': {...}}, frames)"}
_DICT_API = {"metadata_from_proto", "read_metadata", "build_metadata", "forecast_metadata", "config_from_metadata"}
_META_KEYS = {"config", "graph", "precision", "batch", "batch_mode", "warp", "warp_gate", "io_dtype", "state_dtype",
              "horizon", "calibration", "opset", "fp32_islands", "state", "inputs", "outputs", "schema", "test_mean",
              "test_std"}


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        rel = str(f.relative_to(PKG))
        if rel.startswith(("graph/",) + BELOW) or rel in ALIASES or rel in STANDALONE:
            continue
        yield rel, ast.parse(f.read_text())


def _is_meta_name(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "meta" in name.lower()


def _offences(tree: ast.Module, rel: str = "") -> list[str]:
    allowed = {key for (where, key) in BARE_MAPPINGS if where == rel}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "load" \
                and isinstance(n.func.value, ast.Name) and n.func.value.id == "onnx":
            out.append(f"line {n.lineno}: onnx.load (use graph.onnx_file.load_onnx)")
        if isinstance(n, ast.Call):
            fname = n.func.id if isinstance(n.func, ast.Name) else n.func.attr if isinstance(n.func, ast.Attribute) else ""
            if fname in _DICT_API:
                out.append(f"line {n.lineno}: {fname}() (ask GraphMetadata)")
            if fname == "get" and isinstance(n.func, ast.Attribute) and _is_meta_name(n.func.value) and n.args \
                    and isinstance(n.args[0], ast.Constant) and n.args[0].value in _META_KEYS - allowed:
                out.append(f"line {n.lineno}: meta.get({n.args[0].value!r}) (use the typed attribute)")
        if isinstance(n, ast.Subscript) and _is_meta_name(n.value) and isinstance(n.slice, ast.Constant) \
                and n.slice.value in _META_KEYS - allowed:
            out.append(f"line {n.lineno}: meta[{n.slice.value!r}] (use the typed attribute)")
        if isinstance(n, ast.ImportFrom) and n.module in (
                "gmg_deploy.export.metadata", "gmg_deploy.export.signature", "gmg_deploy.export.graph_index"):
            out.append(f"line {n.lineno}: imports the old alias {n.module} (import from gmg_deploy.graph)")
    return out


def test_no_stage_rebuilds_the_graph_contract():
    bad = [f"{rel} {o}" for rel, tree in _modules() for o in _offences(tree, rel)]
    assert bad == []


def test_the_checker_sees_each_kind_of_offence():
    src = ("import onnx\nm = onnx.load('x')\nmeta = metadata_from_proto(m)\ncfg = meta['config']\n"
           "p = self.metadata.get('precision')\nfrom gmg_deploy.export.metadata import GraphMetadata\n")
    got = sorted(_offences(ast.parse(src)), key=lambda g: int(g.split(":")[0].split()[1]))
    assert [g.split(":")[0] for g in got] == ["line 2", "line 3", "line 4", "line 5", "line 6"], got
