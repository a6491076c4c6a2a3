"""Datasets: image folders and StyleGAN-format zips, the built-in OpenMoji set, and the dataset tool.

Names are imported lazily so the dataset tool (PIL only) does not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageDataset": "leangen.data.dataset",
    "open_dataset": "leangen.data.dataset",
    "create_dataset": "leangen.data.create",
    "dataset_info": "leangen.data.create",
    "openmoji_zip": "leangen.data.create",
    "render_openmoji": "leangen.data.openmoji",
    "OPENMOJI_ATTRIBUTION": "leangen.data.openmoji",
    "leangen_cache_dir": "leangen.data.openmoji",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'leangen.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
