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

import click

from gmg_deploy.cli.common import OneLineCommand, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model", required=True, metavar="FORECAST.onnx|MODEL.plan",
              help="Forecast graph (gmg-export --graph forecast) or a TensorRT engine built from one (gmg-build).")
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
@click.option("--idle-timeout", type=float, default=60.0, show_default=True,
              help="Seconds after which an idle stream's state is released.")
@click.option("--threads", type=int, default=1, show_default=True, help="python flavour: ONNX Runtime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--force", is_flag=True, help="Replace an existing REPO/NAME.")
@one_line_errors
def main(model, repo, name, flavour, max_batch, instances, max_streams, strategy, idle_timeout, threads, as_json,
         force) -> None:
    """Write a Triton model repository entry serving MODEL with per-stream state kept in the server."""
    from gmg_deploy.errors import InputError
    from gmg_deploy.serve.triton_config import ServeOptions
    from gmg_deploy.serve.triton_repo import write_model_repository

    if threads < 1:
        raise InputError(f"--threads={threads} must be >= 1")
    opts = ServeOptions(name=name, flavour=flavour, max_batch=max_batch, instances=instances,
                        max_streams=max_streams, strategy=strategy, idle_timeout_s=idle_timeout,
                        intra_op_threads=threads)
    entry = write_model_repository(model, repo, opts, force=force)
    if as_json:
        click.echo(json.dumps(entry.to_dict(), sort_keys=True))
        return
    click.echo(f"wrote {entry.path} ({entry.platform}, max_batch_size {entry.max_batch}, horizon {entry.horizon}, "
               f"{entry.states} state tensors); serve it with: gmg-serve {repo}")


if __name__ == "__main__":  # pragma: no cover
    main()
