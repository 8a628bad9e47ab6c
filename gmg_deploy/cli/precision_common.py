"""Shared CLI plumbing for every gmg-* command: one-line errors, exit code 2."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from gmg_deploy.errors import GMGError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``; a :class:`GMGError` becomes ``error: <msg>`` (one line) on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GMGError as e:
            click.echo("error: " + " ".join(str(e).splitlines()), err=True)
            sys.exit(2)

    return wrapper
