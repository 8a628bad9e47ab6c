"""``gmg-triton``: a Triton model repository entry for a forecast graph (.onnx) or a TensorRT engine (.plan).

Examples::

    gmg-export --graph forecast -o gmg_fc.onnx             # observe one frame, forecast aft in one call
    gmg-triton --model gmg_fc.onnx -o models               # implicit state, onnxruntime_onnx (GPU servers)
    gmg-triton --model gmg_fc.onnx -o models --flavour python   # Python backend + ONNX Runtime (CPU, pytriton)
    gmg-triton --model gmg_fc.plan -o models --name gmg_trt     # tensorrt_plan (engine from gmg-build)

Writes ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/model.onnx|model.plan`` (+ ``model.py`` for python).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import click

from gmg_deploy.cli.model_options import model_argument
from gmg_deploy.cli.common import OneLineCommand, fields_of, one_line_errors

if TYPE_CHECKING:
    from gmg_deploy.serve.triton_config import ServeOptions


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@model_argument(help="Forecast graph (gmg-export --graph forecast) or a TensorRT engine built from one (gmg-build)")
@click.option("-o", "--output", "repo", required=True, metavar="REPO", help="Model repository folder (created).")
@click.option("--name", default="gmg", show_default=True, help="Model name (folder in REPO).")
@click.option("--flavour", type=click.Choice(["implicit", "python"]), default="implicit", show_default=True,
              help="implicit: ONNX Runtime/TensorRT backend keeps the state (sequence_batching.state); "
                   "python: Python backend running ONNX Runtime keeps it per CORRID.")
@click.option("--max-batch", type=int, default=None,
              help="max_batch_size [8 for ONNX; the engine profile's maximum for a .plan].")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (instance_group count).")
@click.option("--max-streams", type=int, default=64, show_default=True,
              help="oldest strategy: max_candidate_sequences (streams batched together per instance).")
@click.option("--strategy", type=click.Choice(["oldest", "direct"]), default="oldest", show_default=True,
              help="Sequence batcher strategy.")
@click.option("--idle-timeout", "idle_timeout_s", type=float, default=60.0, show_default=True,
              help="Seconds after which an idle stream's state is released.")
@click.option("--threads", "intra_op_threads", type=int, default=0, show_default=True,
              help="python flavour: ONNX Runtime intra-op threads per model instance (0: ONNX Runtime's default, one "
                   "per core, as in gmg-infer/gmg-compare; at most 4x the CPU count).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--force", is_flag=True, help="Replace an existing REPO/NAME.")
@one_line_errors
def main(**options: Any) -> None:
    """Write a Triton model repository entry serving MODEL with per-stream state kept in the server."""
    from gmg_deploy.serve.triton_repo import write_model_repository

    opts = TritonOptions.from_click(options)
    entry = write_model_repository(opts.model, opts.repo, opts.serve, force=opts.force)
    if opts.as_json:
        click.echo(json.dumps(entry.to_dict(), sort_keys=True))
        return
    click.echo(f"wrote {entry.path} ({entry.platform}, max_batch_size {entry.max_batch}, horizon {entry.horizon}, "
               f"{entry.states} state tensors); serve it with: gmg-serve {opts.repo}")
    r = opts.repo
    click.echo(f"replicas (failover): gmg-serve {r} --grpc-port 8001 --http-port 8000 --metrics-port 8002 & "
               f"gmg-serve {r} --grpc-port 8011 --http-port 8010 --metrics-port 8012 & then "
               f"--engine triton://127.0.0.1:8001,127.0.0.1:8011/{opts.serve.name}")


@dataclass(frozen=True)
class TritonOptions:
    """What ``gmg-triton`` was asked to do: the files, and ``serve`` (the repository entry's settings)."""

    model: str
    repo: str
    as_json: bool
    force: bool
    serve: "ServeOptions"

    @classmethod
    def from_click(cls, options: Mapping[str, Any]) -> "TritonOptions":
        from gmg_deploy.cli.model_options import resolve_model
        from gmg_deploy.serve.triton_config import ServeOptions

        if "model" not in options:  # MODEL or --model
            options = dict(options)
            options["model"] = resolve_model(options)
        own = {k: v for k, v in fields_of(cls, options).items() if k != "serve"}
        return cls(serve=ServeOptions(**fields_of(ServeOptions, options)), **own)


if __name__ == "__main__":  # pragma: no cover
    main()
