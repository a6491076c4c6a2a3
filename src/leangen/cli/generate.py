"""``leangen generate``: images from a checkpoint, saved model or preset, whatever kind of model it is.

- a generator (z -> image): one image per seed (``seed0000.png``, StyleGAN naming), with truncation, noise mode,
  stages and other sizes where the model supports them;
- a likelihood model: one sample per seed, with a sampling ``--temperature``.

Translators (label map -> image) have their own verb, ``leangen translate``.

Randomness comes from one CPU generator per seed, so a seed gives the same image on any device and batch size.
"""
from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any, Callable

import click
import torch

from leangen.cli.common import KIND_NAMES, execution_options, fail, load_model, note_kept
from leangen.execution import ExecutionPolicy


# Largest --size rendered (pixels per image): 2048 x 2048, e.g. 1024 x 4096. Pixel-synthesis generators (CIPS) hold
# per-pixel features of every layer; at 4096 x 4096 one image asked for 4 GiB at once.
MAX_SIZE_PIXELS = 2048 * 2048
# Smallest --temperature: logits divided by less overflow float32 and the samples come out black.
MIN_TEMPERATURE = 1e-3


def parse_size(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"256x512"``, ``"256,512"`` or ``"256 512"`` -> (H, W) = (256, 512); at most
    ``MAX_SIZE_PIXELS`` pixels."""
    parts = [p for p in re.split(r"[x×,\s]+", text.strip().lower()) if p]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or any(v < 1 for v in vals):
        raise ValueError(f"bad --size {text!r}: expected N, 'H W', HxW or H,W with positive integers")
    h, w = (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])
    if h * w > MAX_SIZE_PIXELS:
        raise ValueError(f"--size {h}x{w} is {h * w} pixels per image; the limit is {MAX_SIZE_PIXELS} (2048x2048, "
                         f"or e.g. 1024x4096)")
    return h, w


def _temperature(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or value < MIN_TEMPERATURE:
        raise click.BadParameter(f"{value} is not a finite number >= {MIN_TEMPERATURE:g}")
    return value


class _SizeCommand(click.Command):
    """Lets ``--size H W`` take two values while ``--size N`` keeps working (click options have a fixed arity)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        for i, a in enumerate(args[:-2]):
            if a == "--size" and args[i + 1].isdigit() and args[i + 2].isdigit():
                args[i + 1: i + 3] = [f"{args[i + 1]}x{args[i + 2]}"]
                break
        return super().parse_args(ctx, args)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` explicitly (``**kwargs`` catch-alls do not count: they ignore it)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def stage_strip(stages: list[torch.Tensor], size: int) -> torch.Tensor:
    """Stage images ``[B, 3, r_i, r_i]`` -> one strip ``[B, 3, size, size * S]``: each upsampled (nearest) to the final
    size, side by side, so the coarse stages show their actual pixels."""
    ups = [s.float() if s.shape[-1] == size else
           torch.nn.functional.interpolate(s.float(), size=(size, size), mode="nearest") for s in stages]
    return torch.cat(ups, dim=3)


@click.command(name="generate", cls=_SizeCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--network", required=True, metavar="PATH|PRESET",
              help="Saved model folder, training snapshot, run directory, or a preset name (random weights).")
@click.option("--seeds", default="0-7", show_default=True, metavar="LIST", help="Seeds, e.g. 0-63 or 1,5,9-12.")
@click.option("--trunc", "truncation", type=float, default=1.0, show_default=True,
              help="Truncation psi (1 = none; 0.5-0.7 trades variety for quality).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Per-pixel noise: the model's fixed noise, fresh noise, or none.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), metavar="DIR", help="Where images go.")
@click.option("--grid", is_flag=True, help="Also write grid.png with all images.")
@click.option("--stages", is_flag=True,
              help="Also write seedNNNN-stages.png: every stage's image, upsampled, side by side (PixelFolder).")
@click.option("--size", default=None, metavar="N|'H W'",
              help="Render at another resolution (CIPS): --size 512, --size 256 512 or --size 256x512.")
@click.option("--temperature", type=float, callback=_temperature, default=1.0, show_default=True,
              help="Likelihood models: sampling temperature (< 1: sharper, less varied; at least 0.001).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per forward pass (memory, not results: a seed gives the same image at any batch).")
@execution_options(precision=True, compile=True, na_backend=True)
@click.pass_context
def command(ctx: click.Context, network: str, seeds: str, truncation: float, noise_mode: str, outdir: str,
            grid: bool, stages: bool, size: str | None, temperature: float, batch: int,
            policy: ExecutionPolicy) -> None:
    """Generate images: DIR/seed0000.png per seed (generators, likelihood models), optionally grid.png.
    Translators: use `leangen translate`.

    \b
    Examples:
      leangen generate --network runs/00000-stylegan2-tiny32-openmoji-32 --seeds 0-63 --grid --outdir out
      leangen generate --network runs/00000-stylegan2-tiny32-openmoji-32 --seeds 1,5,9 --trunc 0.7 --outdir out
      leangen generate --network saved/pixelfolder --seeds 0-7 --stages --outdir out/stages
      leangen generate --network saved/cips --seeds 0-3 --size 512 --outdir out/cips512
      leangen generate --network saved/cips --seeds 0 --size 256 1024 --outdir out/panorama
      leangen generate --network runs/00001-independent-pixels-32-openmoji-32 --seeds 0-15 --temperature 0.9 --outdir out
      leangen generate --network saved/stylenat --seeds 0-255 --device cuda --precision bf16 --compile compile --outdir out
    """
    import numpy as np
    from PIL import Image

    from leangen.models.base import image_grid, to_uint8
    from leangen.utils.seeds import latents_for_seeds, parse_seeds

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as e:
        fail(str(e))
    hw = None
    if size is not None:
        try:
            hw = parse_size(size)
        except ValueError as e:
            fail(str(e))

    model = load_model(network, policy, ("generator", "likelihood", "translator"), "leangen generate")
    ctx.with_resource(policy.autocast())  # the precision of every forward below
    if model.kind == "translator":
        fail(f"{network} holds a translator (label map -> image): use `leangen translate --network {network} "
             f"--input PNG|DIR --outdir {outdir}`")
    given = [f"--{name.replace('_', '-')}" for name in ("truncation", "noise_mode", "stages", "size", "temperature")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    allowed = {"generator": {"--truncation", "--noise-mode", "--stages", "--size"},
               "likelihood": {"--temperature"}}[model.kind]
    wrong = [g.replace("--truncation", "--trunc") for g in given if g not in allowed]
    if wrong:
        fail(f"{network} holds {KIND_NAMES[model.kind]}: {', '.join(wrong)} does not apply to it")
    out = Path(outdir)
    if model.kind == "likelihood":
        _sample(model, seed_list, temperature, out, grid)
        return
    G = model

    # Capabilities are read from synthesis()'s signature, so any model that implements them gets the options.
    synth_kwargs: dict[str, Any] = {}
    if hw is not None:
        if not _accepts(G.synthesis, "size"):
            fail(f"{G.model_type} renders only at its native {G.img_resolution}x{G.img_resolution}; --size needs a "
                 f"model that can render other resolutions (CIPS)")
        synth_kwargs["size"] = hw
    if stages and not _accepts(G.synthesis, "return_stages"):
        fail(f"{G.model_type} has no intermediate stage images; --stages needs a multi-stage model (PixelFolder)")

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    note_kept(f"Images written before the error stay in {out}")
    all_images = []
    try:
        for i in range(0, len(seed_list), batch):
            chunk = seed_list[i:i + batch]
            if stages:
                # G.generate returns final images only; for stages call synthesis on the same per-seed latents.
                z = latents_for_seeds(chunk, G.z_dim).to(policy.device)
                with torch.inference_mode():
                    ws = G.map(z, truncation_psi=truncation)
                    img, stage_imgs = G.synthesis(ws, noise_mode=noise_mode, return_stages=True, **synth_kwargs)
                img = img.float().cpu()
                strips = stage_strip([s.cpu() for s in stage_imgs], img.shape[-1])
                for seed, strip in zip(chunk, strips):
                    Image.fromarray(to_uint8(strip).permute(1, 2, 0).numpy()).save(out / f"seed{seed:04d}-stages.png")
            else:
                img = G.generate(chunk, truncation=truncation, noise_mode=noise_mode,  # type: ignore[arg-type]
                                 output_type="pt", batch_size=batch, **synth_kwargs)
            for seed, im in zip(chunk, img):
                Image.fromarray(to_uint8(im).permute(1, 2, 0).numpy()).save(out / f"seed{seed:04d}.png")
            if grid:
                all_images.append(img)
            click.echo(f"{min(i + batch, len(seed_list))}/{len(seed_list)} images", err=True)
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"generation failed: {first}")
    if grid:
        images = torch.cat(all_images)
        Image.fromarray(np.ascontiguousarray(image_grid(images))).save(out / "grid.png")
    h, w = img.shape[-2:]
    click.echo(f"wrote {len(seed_list)} image(s) of {h}x{w} to {out}"
               + (" + grid.png" if grid else "") + (" + per-seed stage strips" if stages else ""))


def _sample(model: Any, seeds: list[int], temperature: float, out: Path, grid: bool) -> None:
    """One sample per seed, each written as soon as it is drawn: sampling is slow (a forward per pixel or slice),
    so Ctrl-C or an error in a long seed list keeps every image already done."""
    import numpy as np
    from PIL import Image

    from leangen.models.base import image_grid, to_uint8

    out.mkdir(parents=True, exist_ok=True)
    note_kept(f"Images written before the error stay in {out}")
    done = []
    for i, seed in enumerate(seeds):
        image = model.generate([seed], temperature=temperature, output_type="pt")[0]
        Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()).save(out / f"seed{seed:04d}.png")
        done.append(image)
        if len(seeds) > 1:
            click.echo(f"{i + 1}/{len(seeds)} images", err=True)
    if grid:
        Image.fromarray(np.ascontiguousarray(image_grid(torch.stack(done)))).save(out / "grid.png")
    h, w = done[0].shape[-2:]
    click.echo(f"wrote {len(seeds)} image(s) of {h}x{w} to {out}" + (" + grid.png" if grid else ""))
