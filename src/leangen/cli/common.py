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


def load_generator(network: str, device: Any) -> Any:
    """``leangen.load`` for CLI verbs that need an image generator: clean errors, a note for random-weight presets."""
    import warnings

    import leangen
    from leangen.models.base import StyleGenerator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            G = leangen.load(network, device=device)
        except (FileNotFoundError, ValueError, KeyError) as e:
            fail(str(e.args[0] if isinstance(e, KeyError) and e.args else e))
    for w in caught:
        if "randomly initialized" in str(w.message):
            click.echo(f"note: {w.message}", err=True)
    if not isinstance(G, StyleGenerator):
        fail(f"{network} holds a {type(G).__name__} ({G.model_type}), not an image generator")
    return G
