"""Options shared by the commands that take a model: the MODEL argument, the checkpoint options, --warp-gate."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from gmg_deploy.model.config import WARP_GATES

WARP_GATE_HELP = ("Warp-gate layout: motionrnn (gate channel k gates tap k), published (the published GMG code's "
                  "transposed gate; 9x9 motion grid only) or auto (published exactly at a 9x9 motion grid).")


def warp_gate_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--warp-gate motionrnn|published|auto`` (default auto) as the ``warp_gate`` parameter."""
    return click.option("--warp-gate", "warp_gate", type=click.Choice(list(WARP_GATES)), default="auto",
                        show_default=True, help=WARP_GATE_HELP)(fn)


def auto_gate_note(requested: str, resolved: str) -> str | None:
    """One line saying that ``auto`` chose ``published`` and how to override it, else None."""
    if requested != "auto" or resolved != "published":
        return None
    return ("warp gate: auto chose 'published' (9x9 motion grid: the published GMG code's transposed gate); "
            "if the checkpoint was trained by code that permutes the gate (upstream MotionRNN), "
            "pass --warp-gate motionrnn")


# --- The model argument and the checkpoint options: one spelling for every command -------------------------------
#
# Convention (Polygraphy's `polygraphy run MODEL`, trtexec's one model per run): the model file is the first
# positional argument of every command that takes one, or `--model PATH`; the older spellings (`--ckpt`,
# `--onnx`, `--engine`) stay as aliases. What the file is comes from its suffix: `.ckpt/.pth/.pt` checkpoint,
# `.onnx` graph, `.plan/.engine` TensorRT engine, `triton://` served model.

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")


def model_argument(*aliases: str, required: bool = True, help: str = "Model file.",
                   param: str = "model") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``[MODEL]`` (positional), ``--model`` and the legacy ``aliases``; :func:`resolve_model` joins them."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for alias in reversed(aliases):
            fn = click.option(alias, f"{param}__{alias.lstrip('-').replace('-', '_')}", default=None, metavar="PATH",
                              help="Same as MODEL (older spelling).")(fn)
        fn = click.option("--model", f"{param}__model", default=None, metavar="PATH",
                          help=f"{help} (same as the MODEL argument).")(fn)
        return click.argument(f"{param}__arg", metavar="MODEL" if required else "[MODEL]", required=False,
                              default=None)(fn)

    return deco


def resolve_model(options: dict[str, Any], *, required: bool = True, param: str = "model",
                  missing: str = "give the model file as the first argument (MODEL) or with --model PATH") -> str | None:
    """The model path given positionally, with ``--model`` or an alias (pops them all from ``options``)."""
    from gmg_deploy.errors import InputError

    given = {}
    for key in [k for k in options if k.startswith(f"{param}__")]:
        value = options.pop(key)
        if value is not None:
            given["MODEL" if key.endswith("__arg") else "--" + key.split("__", 1)[1].replace("_", "-")] = value
    if len(given) > 1:
        raise InputError(f"the model is given {len(given)} times ({', '.join(f'{k} {v}' for k, v in given.items())}); "
                         "give it once")
    if not given and required:
        raise InputError(missing)
    return next(iter(given.values()), None)


def is_checkpoint(path: str | None) -> bool:
    """True for a checkpoint file name (``.ckpt``, ``.pth``, ``.pt``)."""
    return path is not None and str(path).lower().endswith(CHECKPOINT_SUFFIXES)


CHECKPOINT_OPTIONS = ("trust_checkpoint", "config_file", "in_shape", "pre", "aft", "arch", "warp_gate")


def checkpoint_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The same checkpoint options on every command that accepts a checkpoint.

    ``--trust-checkpoint``, ``--config-file``, ``--in-shape``, ``--pre``, ``--aft``, ``--arch``, ``--warp-gate``
    (gathered by :meth:`CheckpointOptions.from_click`).
    """
    fn = warp_gate_option(fn)
    fn = click.option("--arch", type=click.Choice(["gmg", "motionrnn"], case_sensitive=False), default=None,
                      help="Checkpoint: architecture, when the checkpoint/config does not say.")(fn)
    fn = click.option("--aft", "aft", type=click.IntRange(min=1), default=None,
                      help="Predicted frames (aft_seq_length) [the model's].")(fn)
    fn = click.option("--pre", "pre", type=click.IntRange(min=1), default=None,
                      help="Observed frames (pre_seq_length) [the model's].")(fn)
    fn = click.option("--in-shape", default=None,
                      help="Checkpoint: T,C,H,W of one sequence (a bare state dict needs it; overrides the checkpoint).")(fn)
    fn = click.option("--config-file", type=click.Path(dir_okay=False), default=None,
                      help="Checkpoint: OpenSTL config (configs/<data>/GMG.py) for a bare state dict; parsed, never executed.")(fn)
    return click.option("--trust-checkpoint", is_flag=True,
                        help="Checkpoint: allow arbitrary pickled objects (runs code; trusted files only).")(fn)


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    """The checkpoint options of a command (see :func:`checkpoint_options`)."""

    trust_checkpoint: bool = False
    config_file: str | None = None
    in_shape: str | None = None
    pre: int | None = None
    aft: int | None = None
    arch: str | None = None
    warp_gate: str = "auto"

    @classmethod
    def from_click(cls, options: dict[str, Any]) -> "CheckpointOptions":
        return cls(**{k: options[k] for k in CHECKPOINT_OPTIONS if k in options})

    def describing_a_checkpoint(self) -> list[str]:
        """The options given that only a checkpoint uses (``--pre``/``--aft`` excluded: commands reuse them)."""
        names = {"trust_checkpoint": "--trust-checkpoint", "config_file": "--config-file", "in_shape": "--in-shape",
                 "arch": "--arch"}
        return [flag for key, flag in names.items() if getattr(self, key)]

    def refuse_for_graph(self, path: str) -> None:
        """A graph or engine was given: refuse the options that describe a checkpoint, in one line."""
        from gmg_deploy.errors import InputError

        given = self.describing_a_checkpoint()
        if given:
            raise InputError(f"{'/'.join(given)} describe a checkpoint; use them with --ckpt (a .ckpt/.pth), "
                             f"not with {path} (a graph's metadata holds its configuration)")

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`gmg_deploy.model.load_checkpoint`."""
        from gmg_deploy.cli.common import parse_in_shape

        return {"trust_checkpoint": self.trust_checkpoint, "config_file": self.config_file,
                "in_shape": parse_in_shape(self.in_shape), "pre_seq_length": self.pre,
                "aft_seq_length": self.aft, "arch": self.arch, "warp_gate": self.warp_gate}
