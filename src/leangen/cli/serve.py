"""``leangen serve``: the local web demo (``leangen.serve``; needs the ``serve`` extra, i.e. gradio)."""
from __future__ import annotations

import click

from leangen.cli.common import device_option, fail


class _ModelsCommand(click.Command):
    """Lets ``--models a=x b=y`` take several values as well as ``--models a=x --models b=y`` (click options have a
    fixed arity)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        in_models = False
        for a in args:
            if a.startswith("-"):
                in_models = a == "--models" or a.startswith("--models=")
            elif in_models and out[-1] != "--models":
                out.append("--models")  # a further value of the same --models
            out.append(a)
        return super().parse_args(ctx, out)


def parse_models(specs: tuple[str, ...]) -> dict[str, str] | None:
    """``("ASAP-Net=zoo:asapnet", "saved/spade")`` -> display name -> source (a bare source names itself); None when
    none are given (the demo then serves the zoo)."""
    if not specs:
        return None
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not sep:
            name, source = spec, spec
        name, source = name.strip(), source.strip()
        if not name or not source:
            raise click.BadParameter(f"{spec!r}: expected NAME=SOURCE (e.g. ASAP-Net=zoo:asapnet-openmojiseg32)",
                                     param_hint="--models")
        if name in out:
            raise click.BadParameter(f"the name {name!r} is given twice", param_hint="--models")
        out[name] = source
    return out


@click.command(name="serve", cls=_ModelsCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes the demo to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to listen on.")
@click.option("--models", "model_specs", multiple=True, metavar="NAME=SOURCE ...",
              help="Models to serve: display name = zoo:<name>, saved model, run directory or preset name "
                   "[default: every zoo model].")
@device_option
def command(host: str, port: int, model_specs: tuple[str, ...], device: object) -> None:
    """Serve a local web demo: generate, translate (with latency), compare (profile) and compress (before/after).

    \b
    Examples:
      leangen serve
      leangen serve --port 8080 --models ASAP-Net=saved/asapnet SPADE=saved/spade
      leangen serve --models PixelFolder=runs/00000-pixelfolder-tiny32-openmoji-32 --device cuda
    """
    sources = parse_models(model_specs)
    try:
        import gradio  # noqa: F401
    except ImportError:
        fail("leangen serve needs gradio: pip install 'leangen[serve]'")
    from leangen.serve import DemoError, ModelSet, build_app, launch

    try:
        models = ModelSet.load(sources, device=device, strict=sources is not None,
                               log=lambda m: click.echo(m, err=True))
    except DemoError as e:
        fail(str(e))
    for problem in models.problems:
        click.echo(f"warning: not served: {problem}", err=True)
    if not models.models:
        fail("no model to serve: pass --models NAME=SOURCE")
    click.echo(f"serving {len(models.models)} model(s) on http://{host}:{port} (Ctrl-C stops)", err=True)
    launch(build_app(models, device), host=host, port=port, block=True)
