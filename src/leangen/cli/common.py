"""Options and error handling shared by the CLI verbs."""
from __future__ import annotations

from typing import Any, Callable

import click

from leangen.utils.device import resolve_device


def device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--device {auto,cpu,cuda[:i]}``, validated into a ``torch.device``."""

    def _convert(ctx: click.Context, param: click.Parameter, value: str):
        try:
            return resolve_device(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return click.option("--device", default="auto", show_default=True, callback=_convert, metavar="auto|cpu|cuda[:i]",
                        help="Where to run.")(fn)


def fail(message: str) -> None:
    """Stop the command with a readable error (exit code 1, no traceback)."""
    raise click.ClickException(message)
