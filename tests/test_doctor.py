"""gmg-doctor: versions, providers, devices and usable backends, as text and JSON."""
from __future__ import annotations

import json

import onnx
import onnxruntime
from click.testing import CliRunner

from gmg_deploy.cli.doctor_cmd import main as doctor


def test_doctor_json():
    r = CliRunner().invoke(doctor, ["--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["versions"]["onnx"] == onnx.__version__
    assert rep["versions"]["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in rep["onnxruntime_providers"]
    assert rep["backends"]["onnxruntime-cpu"]["usable"] is True
    assert "int8" in rep["backends"]["onnxruntime-cpu"]["precisions"]
    if rep["versions"]["tensorrt"] is None or not rep["cuda_devices"]:
        assert rep["backends"]["tensorrt"]["usable"] is False and rep["notes"]


def test_doctor_text():
    r = CliRunner().invoke(doctor, [])
    assert r.exit_code == 0
    assert "onnxruntime" in r.output and "backends:" in r.output and "tensorrt" in r.output
