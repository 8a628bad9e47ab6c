"""The TensorRT pitfall table: version ranges, graph patterns on real exported metadata, gmg-doctor's listing."""
from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from gmg_deploy.trt.pitfalls import (PITFALLS, Pitfall, compare_versions, needs_verify, parse_version, pitfalls_for,
                                        pitfalls_in, version_in)
from gmg_deploy.errors import InputError


@pytest.mark.parametrize("text, parsed", [("10.14.1.48", (10, 14, 1, 48)), ("10.3.0", (10, 3, 0)), ("11.1", (11, 1)),
                                          ("11", (11,)), ("11.0.0b1", (11, 0, 0)), ("10.9.0.34+cuda12", (10, 9, 0, 34)),
                                          (" 10.13.0.35 ", (10, 13, 0, 35))])
def test_parse_version(text, parsed):
    assert parse_version(text) == parsed


@pytest.mark.parametrize("bad", ["unknown", "", "v10.1", ".10"])
def test_parse_version_refuses_non_numbers(bad):
    with pytest.raises(InputError, match="not a version number"):
        parse_version(bad)


@pytest.mark.parametrize("a, b, want", [("10.14.1.48", "10.14.1.48", 0), ("10.14.1", "10.14.1.48", -1),
                                        ("10.14.1.49", "10.14.1.48", 1), ("10.3.0", "10.14.1.48", -1),
                                        ("11.1", "10.14.1.48", 1), ("11.1", "11.1.0.0", 0), ("10.10", "10.9.9", 1)])
def test_compare_versions_numerically(a, b, want):
    assert compare_versions(a, b) == want
    assert compare_versions(b, a) == -want


def test_version_ranges():
    assert version_in("10.14.1.48", ">=10.14.1.48")
    assert not version_in("10.14.1", ">=10.14.1.48")
    assert version_in("11.1", ">=10.14.1.48")
    assert version_in("10.2.0", ">=10.0,<10.3") and not version_in("10.3.0", ">=10.0,<10.3")
    assert version_in("9.0", "") and version_in("9.0", "*")
    assert version_in("10.3", "==10.3.0.0") and version_in("10.4", "!=10.3")
    with pytest.raises(InputError, match="clause"):
        version_in("10.3", ">= 10 <11")


def test_table_rows_are_well_formed():
    assert len({p.id for p in PITFALLS}) == len(PITFALLS)
    for p in PITFALLS:
        assert isinstance(p, Pitfall) and all(isinstance(getattr(p, f.name), (str, bool)) for f in dataclasses.fields(p))
        version_in("10.0.0", p.versions)  # every range parses
        assert p.pattern and p.source and p.advice
    with pytest.raises(dataclasses.FrozenInstanceError):
        PITFALLS[0].advice = "x"  # type: ignore[misc]
    assert {p.source for p in PITFALLS} >= {"pytorch/TensorRT#4074", "NVIDIA/TensorRT#4646"}


def test_doctor_range_listing():
    ids = lambda v: {p.id for p in pitfalls_in(v)}  # noqa: E731
    assert ids("10.14.1.48") == {"fp16-fp32-gridsample", "gridsample-opset20-modes"}
    assert ids("10.13.0.35") == {"gridsample-opset20-modes"}
    assert ids("9.0") == set()
    assert ids(None) == ids("unknown") == {p.id for p in PITFALLS}


@pytest.fixture(scope="module")
def demo_metas():
    """Metadata of the demo model's real step graphs: FP32 and FP16, GridSample and gather warps."""
    from gmg_deploy import load_checkpoint
    from gmg_deploy.data.demo import demo_checkpoint_path
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.export.metadata import metadata_from_proto
    from gmg_deploy.precision.api import apply_precision

    out = {}
    for warp in ("gridsample", "gather"):
        proto = build_proto(load_checkpoint(demo_checkpoint_path(), warp=warp))
        out[("fp32", warp)] = metadata_from_proto(proto)
        out[("fp16", warp)] = metadata_from_proto(apply_precision(proto, "fp16"))
    return out


def test_fp16_gridsample_island_needs_verify_from_10_14_1_48(demo_metas):
    m = demo_metas[("fp16", "gridsample")]
    assert m["fp32_islands"]["warp"] > 0
    assert [p.id for p in pitfalls_for("10.14.1.48", m)] == ["fp16-fp32-gridsample"]
    assert [p.id for p in needs_verify("11.1", m)] == ["fp16-fp32-gridsample"]
    assert "--warp gather" in pitfalls_for("11.1", m)[0].advice
    assert pitfalls_for("10.14.1", m) == [] and pitfalls_for("10.3.0", m) == []
    assert [p.id for p in pitfalls_for("unknown", m)] == ["fp16-fp32-gridsample"]  # assumed, not missed


def test_other_graphs_do_not_hit_4074(demo_metas):
    for key in (("fp32", "gridsample"), ("fp32", "gather"), ("fp16", "gather")):
        assert pitfalls_for("11.1", demo_metas[key]) == [], key
    no_warp_island = {**demo_metas[("fp16", "gridsample")], "fp32_islands": {"warp": 0, "softmax": 2}}
    assert pitfalls_for("11.1", no_warp_island) == []


def test_opset_20_gridsample_row(demo_metas):
    m = demo_metas[("fp32", "gridsample")]
    assert [p.id for p in pitfalls_for("10.3.0", m, opset=20)] == ["gridsample-opset20-modes"]
    assert pitfalls_for("10.3.0", m, opset=19) == []
    assert pitfalls_for("10.3.0", demo_metas[("fp32", "gather")], opset=21) == []
    assert not pitfalls_for("10.3.0", m, opset=20)[0].requires_verify  # the lint refuses it instead


def test_the_opset_row_matches_the_lint(tmp_path):
    """The table's opset bound is the lint's: a GridSample graph the lint refuses is the one the row names."""
    from gmg_deploy.export.trt_lint import GRIDSAMPLE_BAD_OPSET

    assert str(GRIDSAMPLE_BAD_OPSET) in next(p for p in PITFALLS if p.id == "gridsample-opset20-modes").pattern


def test_doctor_lists_pitfalls_or_says_tensorrt_is_missing():
    from gmg_deploy.cli.doctor_cmd import main as doctor
    from gmg_deploy.trt.trt_import import tensorrt_version

    r = CliRunner().invoke(doctor, [])
    assert r.exit_code == 0, r.output
    rep = json.loads(CliRunner().invoke(doctor, ["--json"]).stdout)
    if tensorrt_version() is None:
        assert "TensorRT pitfalls: TensorRT not installed" in r.output
        assert rep["tensorrt_pitfalls"] is None
    else:
        assert [p["id"] for p in rep["tensorrt_pitfalls"]] == [p.id for p in pitfalls_in(tensorrt_version())]


def test_environment_pitfall_section_for_a_given_version():
    from gmg_deploy.cli.environment_report import format_pitfalls

    text = format_pitfalls("10.14.1.48")
    assert "pytorch/TensorRT#4074" in text and "NVIDIA/TensorRT#4646" in text and "--warp gather" in text
    assert "4074" not in format_pitfalls("10.13.0.35")
    assert format_pitfalls(None) == "TensorRT pitfalls: TensorRT not installed"
