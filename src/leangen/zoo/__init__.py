"""The model zoo: trained models that ship with leangen (package data under ``leangen/zoo/weights/``).

One entry is a folder ``weights/<name>/`` holding a saved model (``config.json`` + ``model.safetensors``, as
``PretrainedModel.save_pretrained`` writes them), its ``card.json`` (family, task, data, metrics with their full
records, training time and device, the command that reproduces it, the sha256 of the weights) and ``samples.png``.
``benchmarks/zoo.py`` trains and writes them; nothing here downloads anything.

    >>> import leangen
    >>> G = leangen.load("zoo:stylegan2-openmoji32")      # same as leangen.zoo.load("stylegan2-openmoji32")

``$LEANGEN_ZOO_DIR`` points the zoo at another folder of entries (tests, a zoo trained elsewhere).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from leangen.models.pretrained import CONFIG_NAME, WEIGHTS_NAME, ModelLoadError
from leangen.utils.registry import UnknownName

if TYPE_CHECKING:
    from leangen.models.pretrained import PretrainedModel

ENV_DIR = "LEANGEN_ZOO_DIR"
CARD_NAME = "card.json"
SAMPLES_NAME = "samples.png"
PREFIX = "zoo:"
#: Metric names in the order one is picked as an entry's headline figure (FID of generators, bits/dim of likelihood
#: models, FID of paired translations, then PSNR). Each is a regex matched against the whole name.
MAIN_METRICS = (r"fid\d+k?(_full)?", r"bpd\d*", r"fid_pairs", r"psnr", r"kid\d+k?(_full)?")


class ZooIntegrityError(ModelLoadError):
    """A zoo entry's weights do not match the sha256 its card records (damaged or replaced), or its card is
    unreadable."""


def root(directory: str | os.PathLike | None = None) -> Path:
    """The zoo folder: ``directory``, else ``$LEANGEN_ZOO_DIR``, else the ``weights/`` shipped with the package."""
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent / "weights"


def _complete(folder: Path) -> bool:
    # The trainer writes an entry into ``<name>.tmp`` (card last) and renames it: a folder being written is not listed.
    return "." not in folder.name and all((folder / f).is_file() for f in (CARD_NAME, CONFIG_NAME, WEIGHTS_NAME))


def available(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the complete entries (card, config and weights present), sorted."""
    base = root(directory)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and _complete(p))


def path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The folder of entry ``name``; ``UnknownName`` (a ``KeyError`` and ``ValueError``) listing the entries that
    exist when there is no such entry."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    names = available(directory)
    if name not in names:
        have = ", ".join(names) if names else f"none: {root(directory)} holds no entries"
        raise UnknownName(f"no zoo model {name!r}; available: {have}")
    return root(directory) / name


def card(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The card of entry ``name`` (``card.json``: family, task, data, metrics, training, command, sha256, ...)."""
    card_path = path(name, directory) / CARD_NAME
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooIntegrityError(f"{card_path} is not a readable zoo card: {e}") from None
    if not isinstance(data, dict):
        raise ZooIntegrityError(f"{card_path} is not a zoo card (a JSON object)")
    return data


def cards(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every complete entry's card, sorted by name, each with ``"path"`` (its folder) added."""
    return [dict(card(n, directory), path=str(root(directory) / n)) for n in available(directory)]


def file_sha256(file: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Check entry ``name``'s weights against the sha256 on its card; returns its folder. ``ZooIntegrityError``
    naming the file when they differ or the card records none."""
    folder = path(name, directory)
    want = card(name, directory).get("sha256")
    if not isinstance(want, str) or not re.fullmatch(r"[0-9a-f]{64}", want):
        raise ZooIntegrityError(f"{folder / CARD_NAME} records no sha256 of {WEIGHTS_NAME}: cannot verify the entry")
    have = file_sha256(folder / WEIGHTS_NAME)
    if have != want:
        raise ZooIntegrityError(f"{folder / WEIGHTS_NAME} is damaged or was replaced: sha256 {have[:16]}..., its card "
                                f"records {want[:16]}... (reinstall leangen, or retrain with the card's command)")
    return folder


def load(name: str, device: str | torch.device = "cpu",
         directory: str | os.PathLike | None = None) -> "PretrainedModel":
    """Entry ``name`` (``"stylegan2-openmoji32"`` or ``"zoo:stylegan2-openmoji32"``) as a ready model in eval mode,
    after checking its weights' sha256. Offline: reads only the installed files."""
    from leangen.models.pretrained import PretrainedModel

    folder = verify(name, directory)
    return PretrainedModel.from_pretrained(folder, device=device).eval()


def main_metric(entry_card: dict[str, Any]) -> tuple[str, float] | None:
    """The headline ``(metric name, value)`` of a card (see ``MAIN_METRICS``), or None when it has no metrics."""
    metrics = entry_card.get("metrics") or {}
    for pattern in MAIN_METRICS:
        for key in sorted(metrics):
            if re.fullmatch(pattern, key):
                return key, float(metrics[key])
    key = next(iter(sorted(metrics)), None)
    return None if key is None else (key, float(metrics[key]))


__all__ = ["available", "card", "cards", "path", "load", "verify", "root", "main_metric", "file_sha256",
           "ZooIntegrityError", "ENV_DIR", "PREFIX", "CARD_NAME", "SAMPLES_NAME"]
