"""``gmg-doctor``: versions (torch, onnx, onnxruntime + providers, tensorrt, polygraphy), CUDA devices, and which
backends and precisions are usable on this machine, and the known TensorRT pitfalls of the installed TensorRT."""
from __future__ import annotations

import json

import click

from gmg_deploy.cli.common import OneLineCommand, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@one_line_errors
def main(as_json: bool) -> None:
    """Report what this machine can run."""
    from gmg_deploy.cli.environment_report import environment_report, format_report

    rep = environment_report()
    click.echo(json.dumps(rep, indent=2) if as_json else format_report(rep))


if __name__ == "__main__":  # pragma: no cover
    main()
