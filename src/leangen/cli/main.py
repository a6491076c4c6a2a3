"""Entry point of the ``leangen`` command.

Each verb lives in ``leangen/cli/<verb>.py`` and exposes a click command named ``command``; verbs are imported lazily
so ``leangen --help`` stays fast and a broken optional dependency only affects its own verb.
"""
from __future__ import annotations

import importlib
import sys

import click

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "models": ("leangen.cli.models", "List model presets (family, task, resolution, parameters)."),
    "profile": ("leangen.cli.profile", "Measure params, GMACs, peak memory, latency and throughput."),
    "dataset": ("leangen.cli.dataset", "Create and inspect datasets (folders, zips, built-in OpenMoji)."),
    "train": ("leangen.cli.train", "Train a model preset on a dataset."),
    "generate": ("leangen.cli.generate", "Generate images (generators, likelihood models)."),
    "translate": ("leangen.cli.translate", "Translate label maps into images with a translator (ASAP-Net, ...)."),
    "eval": ("leangen.cli.eval", "Compute metrics: FID/KID/PR, bits/dim, PSNR, teacher agreement."),
    "convert": ("leangen.cli.convert", "Convert an official checkpoint (PixelFolder, CIPS, StyleGAN2, StyleNAT, ASAP-Net)."),
    "export": ("leangen.cli.export", "Export a generator or translator to ONNX; checked in ONNX Runtime."),
    "compress": ("leangen.cli.compress", "Condense, prune and distill a trained translator; report size and speed."),
    "demo": ("leangen.cli.demo", "Train a tiny generator on OpenMoji on CPU, sample, evaluate, profile."),
    "serve": ("leangen.cli.serve", "Serve a local web demo: generate, translate, compare, compress (gradio)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module = importlib.import_module(VERBS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, helptext) for name, (_, helptext) in VERBS.items()])

    def invoke(self, ctx: click.Context) -> object:
        """Run the verb; errors a user can act on (see ``describe_error``) become ``Error: <one line>``, exit 1.

        One handler for every verb, so a full disk or a damaged checkpoint reads the same wherever it surfaces;
        anything else is a bug and keeps its traceback.
        """
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own exits (including --help); describing them would import torch for nothing
        except Exception as e:
            from leangen.cli.common import describe_error

            message = describe_error(e, ctx)
            if message is None:
                raise
            raise click.ClickException(message) from e


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="leangen")
def cli() -> None:
    """leangen: efficient image generation — train, sample, evaluate, profile and export.

    \b
    Examples:
      leangen models
      leangen profile pixelfolder-256 cips-256 stylegan2-256 --json
      leangen dataset create --source openmoji --dest data/openmoji-32.zip --resolution 32
      leangen train --preset stylegan2-tiny32 --data data/openmoji-32.zip --kimg 20
      leangen generate --network runs/00000-stylegan2-tiny32-openmoji-32 --seeds 0-15 --grid --outdir out

    CPU memory freed by one step is kept for the next (no page faults on large activations; see
    leangen.utils.allocator); LEANGEN_CPU_ALLOCATOR=default keeps the C library's defaults.
    """
    from leangen.utils.allocator import retain_freed_cpu_memory

    retain_freed_cpu_memory()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="leangen")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
