"""Shared CLI plumbing for every gmg-* command: one-line errors, exit code 2."""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping

import click

from gmg_deploy.cli import signals
from gmg_deploy.errors import GMGError

if TYPE_CHECKING:
    from gmg_deploy.graph.metadata import GraphMetadata


def say_error(msg: str) -> None:
    """``error: <msg>`` on stderr, on one line (the format of every user mistake)."""
    click.echo("error: " + " ".join(str(msg).split()), err=True)


def exit_interrupted(exc: BaseException) -> None:
    """Ctrl-C or SIGTERM: one line (``interrupted``/``terminated``), exit status 130/143, whatever was running."""
    say_error(signals.message_of(exc))
    sys.exit(signals.status_of(exc))


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``; a :class:`GMGError` becomes ``error: <msg>`` (one line) on stderr and exit status 2.

    Ctrl-C becomes ``error: interrupted`` and exit status 130; SIGTERM ``error: terminated`` and 143
    (see :mod:`gmg_deploy.cli.signals`).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GMGError as e:
            say_error(str(e))
            sys.exit(2)
        except KeyboardInterrupt as e:
            exit_interrupted(e)

    return wrapper


class OneLineCommand(click.Command):
    """A click command whose own usage errors are ``error: <one line>`` with exit status 2, like ours.

    Use as ``@click.command(cls=OneLineCommand, ...)``; ``--help`` and the command's own exits are unchanged.
    """

    def __init__(self, name: str | None, *args: Any, **kwargs: Any) -> None:
        callback = kwargs.get("callback")
        module = getattr(callback, "__module__", "") or ""
        if module == "__main__":  # python -m gmg_deploy.cli.export_cmd
            module = str(getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", ""))
        if name in (None, "main") and module.startswith("gmg_deploy.cli.") and module.endswith("_cmd"):
            name = "gmg-" + module.rsplit(".", 1)[1][: -len("_cmd")]  # gmg_deploy.cli.export_cmd -> gmg-export
        super().__init__(name, *args, **kwargs)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        prog_name = prog_name or self.name
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            signals.start_command()  # a signal deferred while the modules loaded raises here
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            status = rv if isinstance(rv, int) else 0
        except click.ClickException as e:  # UsageError, BadParameter, NoSuchOption, FileError, ...
            name = (e.ctx.command_path if getattr(e, "ctx", None) is not None else None) or prog_name or self.name
            say_error(f"{name}: {e.format_message()} (see {name} --help)")
            status = 2
        except click.Abort:
            say_error("interrupted")
            status = 130
        except KeyboardInterrupt as e:
            say_error(signals.message_of(e))
            status = signals.status_of(e)
        except SystemExit as e:  # one_line_errors' exits (2, 130, 143) and the command's own
            status = e.code
        signals.finish_command()  # the work is over: a late signal no longer changes the outcome
        sys.exit(status)


def fields_of(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a command's click ``options`` that are fields of the options dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in options.items() if k in names}


def parse_in_shape(value: str | None) -> list[int] | None:
    """``--in-shape T,C,H,W`` -> four integers (None when not given)."""
    from gmg_deploy.errors import InputError

    if value is None:
        return None
    try:
        shape = [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--in-shape {value!r} is not four integers T,C,H,W (e.g. 20,1,64,64)") from None
    if len(shape) != 4:
        raise InputError(f"--in-shape {value!r} has {len(shape)} values; give T,C,H,W (e.g. 20,1,64,64)")
    return shape


def load_sequences(data: str, max_sequences: int | None, batch_size: int, model: Any = None) -> Any:
    """Check ``--max-sequences``/``--batch-size`` and read the ``--data`` sequences (the first N of them) with
    :func:`gmg_deploy.frames.read_frames`; ``model``: the model's metadata, or a function returning it (e.g.
    :func:`model_metadata`), asked only when the data needs it (a video, a 4-D array, a PNG folder)."""
    from gmg_deploy.errors import InputError
    from gmg_deploy.frames import read_frames

    if max_sequences is not None and max_sequences < 1:
        raise InputError(f"--max-sequences={max_sequences} must be >= 1")
    if batch_size < 1:
        raise InputError(f"--batch-size={batch_size} must be >= 1")
    frames = read_frames(data, what="--data", model=model)
    return frames if max_sequences is None else frames[:max_sequences]


def model_metadata(path: str, backend: str = "auto", load_kwargs: Mapping[str, Any] | None = None) -> GraphMetadata:
    """A model's metadata (``config.in_shape``, ``test_mean``/``test_std``) without opening it to run: a graph's,
    an engine's sidecar, a checkpoint's (``load_kwargs``: :func:`load_checkpoint`'s); what the frame reader needs
    to read a video or a 4-D array for it."""
    from gmg_deploy.errors import InputError
    from gmg_deploy.graph.metadata import GraphMetadata
    from gmg_deploy.runtime.forecaster import pick_backend

    kind = pick_backend(path, backend)
    if kind == "triton":
        raise InputError(f"{path} is a served model, whose frame size is known only once it is opened; give --data "
                         "as (N,T,C,H,W) .npy/.npz frames")
    if kind == "tensorrt":
        from gmg_deploy.trt.sidecar import read_sidecar, sidecar_path

        return read_sidecar(sidecar_path(path))[0]
    if kind == "torch":
        from gmg_deploy.model import load_checkpoint

        m = load_checkpoint(path, **dict(load_kwargs or {}))
        return GraphMetadata.build(m.config, graph="step", warp=m.warp_form, batch_mode="invariant", batch=None,
                                   test_mean=m.test_mean, test_std=m.test_std)
    return GraphMetadata.read(path)
