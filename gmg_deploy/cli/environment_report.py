"""What this machine can run: versions, ORT providers, CUDA devices, usable backends/precisions, TensorRT pitfalls."""
from __future__ import annotations

import importlib
import platform
from dataclasses import asdict
from typing import Any

from gmg_deploy.runtime.openvino_import import openvino_devices, openvino_version
from gmg_deploy.trt.pitfalls import pitfalls_in
from gmg_deploy.trt.sidecar import HOW_TO_VERIFY
from gmg_deploy.trt.trt_import import tensorrt_version


def _version(module: str) -> str | None:
    """The version of an installed module (never ``tensorrt``: that goes through :mod:`.trt_import`)."""
    try:
        m = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(m, "__version__", "unknown"))


def environment_report() -> dict[str, Any]:
    """A JSON-able report for ``gmg-doctor``."""
    versions = {k: _version(k) for k in ("torch", "onnx", "onnxruntime")}
    versions["tensorrt"] = tensorrt_version()
    versions.update({k: _version(k) for k in ("polygraphy", "numpy")})
    versions["openvino"] = openvino_version()
    providers: list[str] = []
    if versions["onnxruntime"]:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    devices: list[dict[str, Any]] = []
    cuda_version = None
    if versions["torch"]:
        import torch

        cuda_version = torch.version.cuda
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                cc = torch.cuda.get_device_capability(i)
                devices.append({"index": i, "name": torch.cuda.get_device_name(i), "compute_capability": f"{cc[0]}.{cc[1]}"})
    gpu = bool(devices)
    trt_usable = versions["tensorrt"] is not None and gpu
    backends = {
        "torch-cpu": {"usable": versions["torch"] is not None, "precisions": ["fp32"]},
        "torch-cuda": {"usable": versions["torch"] is not None and gpu, "precisions": ["fp32", "fp16"]},
        "onnxruntime-cpu": {"usable": "CPUExecutionProvider" in providers, "precisions": ["fp32", "int8", "fp16 (upcast)"]},
        "onnxruntime-cuda": {"usable": "CUDAExecutionProvider" in providers and gpu, "precisions": ["fp32", "fp16", "int8"]},
        "tensorrt": {"usable": trt_usable, "precisions": ["fp32", "fp16", "int8"],
                     "strongly_typed": "always (11.x)" if trt_usable and versions["tensorrt"].startswith("11")
                     else "STRONGLY_TYPED flag (10.x)" if trt_usable else None},
    }
    ov_devices = openvino_devices()
    backends.update(_openvino_backends(ov_devices))
    recommend = {"cpu": cpu_recommendation(ov_devices, "CPUExecutionProvider" in providers)}
    notes = []
    if versions["openvino"] is None:
        notes.append("OpenVINO missing (fastest CPU backend, --backend openvino): pip install 'gmg-deploy[openvino]'")
    if versions["tensorrt"] is None:
        notes.append("TensorRT missing: pip install 'gmg-deploy[trt]' from NVIDIA's package index on a CUDA machine")
    elif not gpu:
        notes.append("TensorRT is installed but no CUDA device is visible")
    pitfalls = None if versions["tensorrt"] is None else [asdict(p) for p in pitfalls_in(versions["tensorrt"])]
    notes.append(f"verify every engine against its source graph on held-out data: {HOW_TO_VERIFY}")
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "onnxruntime_providers": providers, "cuda": cuda_version, "cuda_devices": devices,
            "openvino_devices": ov_devices, "backends": backends, "recommend": recommend,
            "tensorrt_pitfalls": pitfalls, "notes": notes}


def cpu_recommendation(ov_devices: list[dict[str, Any]], have_ort: bool) -> str:
    """The fastest CPU path measured by benchmarks/bench_cpu_runtimes.py that this machine can run (``--backend
    auto`` stays "by file type": an .onnx graph opens on ONNX Runtime, whose options --no-spin/io_binding differ)."""
    cpu = next((d for d in ov_devices if d["name"] == "CPU"), None)
    if cpu is None:
        if not have_ort:
            return "no CPU backend for .onnx graphs: pip install onnxruntime"
        return ("--backend onnxruntime with an INT8 graph (gmg-export --precision int8 --target cpu); OpenVINO "
                "(pip install 'gmg-deploy[openvino]') measured faster on CPUs with AMX/AVX512 (README 'OpenVINO')")
    caps = cpu.get("capabilities") or []
    fp = ("an FP32 graph with --precision-hint bf16 (BF16 listed)" if "BF16" in caps
          else "an FP32 graph (no BF16 on this CPU)")
    int8 = ", or an INT8 graph (gmg-export --precision int8 --target tensorrt)" if "INT8" in caps else ""
    return (f"--backend openvino: {fp}{int8} (measured fastest at batch 8; at batch 1 ONNX Runtime with an INT8 "
            "--target cpu graph can be faster); rerun benchmarks/bench_cpu_runtimes.py here to choose "
            "(README 'OpenVINO')")


#: OPTIMIZATION_CAPABILITIES entry -> the precision name gmg-deploy uses (``--precision-hint``, INT8 graphs).
_OV_PRECISIONS = {"FP32": "fp32", "BF16": "bf16", "FP16": "f16", "INT8": "int8"}


def _openvino_backends(devices: list[dict[str, Any]]) -> dict[str, Any]:
    """``openvino-<device>`` entries: usable, and the precisions its OPTIMIZATION_CAPABILITIES list."""
    out: dict[str, Any] = {}
    for d in devices:
        caps = d.get("capabilities") or []
        out[f"openvino-{d['name'].lower()}"] = {"usable": True,
                                                 "precisions": [v for k, v in _OV_PRECISIONS.items() if k in caps]}
    out.setdefault("openvino-cpu", {"usable": False, "precisions": ["fp32", "bf16", "f16", "int8"]})
    return out


def format_pitfalls(trt_version: str | None) -> str:
    """The known TensorRT pitfalls whose version range holds ``trt_version``, as text (``gmg-doctor``)."""
    if trt_version is None:
        return "TensorRT pitfalls: TensorRT not installed"
    found = pitfalls_in(trt_version)
    if not found:
        return f"TensorRT pitfalls: none known for TensorRT {trt_version}"
    lines = [f"TensorRT pitfalls for TensorRT {trt_version} (they apply to graphs of that pattern):"]
    for p in found:
        verify = " [gmg-build verifies such engines on data]" if p.requires_verify else ""
        lines.append(f"  {p.id} ({p.source}, TensorRT {p.versions}): {p.pattern}{verify}")
        lines.append(f"    -> {p.advice}")
    return "\n".join(lines)


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"python {rep['python']} on {rep['platform']}"]
    for k, v in rep["versions"].items():
        lines.append(f"  {k:<12} {v or 'not installed'}")
    lines.append(f"  ORT providers: {', '.join(rep['onnxruntime_providers']) or 'none'}")
    lines.append(f"  CUDA (torch build): {rep['cuda'] or 'none'}")
    if rep["cuda_devices"]:
        for d in rep["cuda_devices"]:
            lines.append(f"  GPU {d['index']}: {d['name']} (sm {d['compute_capability']})")
    else:
        lines.append("  GPU: none visible")
    for d in rep.get("openvino_devices", []):
        lines.append(f"  OpenVINO {d['name']}: {d.get('full_name') or '?'} "
                     f"(OPTIMIZATION_CAPABILITIES: {', '.join(d.get('capabilities') or []) or 'none'})")
    lines.append("backends:")
    for name, b in rep["backends"].items():
        lines.append(f"  {name:<17} {'yes' if b['usable'] else 'no ':<4} {', '.join(b['precisions'])}")
    for k, v in rep.get("recommend", {}).items():
        lines.append(f"fastest {k.upper()} path: {v}")
    lines.append(format_pitfalls(rep["versions"]["tensorrt"]))
    for n in rep["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)
