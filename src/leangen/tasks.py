"""Tasks: what the data of a kind of model looks like, independent of how the model is trained.

A task opens the train and validation splits of a data source, checks the first batch against the model, names
the preview inputs of the sample grids and the default metrics. The trainer, ``leangen eval`` and ``leangen
generate`` all go through it, so a new family only names its task in its preset.

==============  ===================================  =================  =========================================
task            data                                 metric split       preview
==============  ===================================  =================  =========================================
unconditional   images                               all (StyleGAN)     seeded latents, also before training
likelihood      images; fixed 90/10 split by name    val                a few seeded samples, at snapshots only,
                                                                        when the model says sampling is cheap
paired          label map -> image pairs; 90/10      val                fixed validation pairs: labels|output|target
unpaired        domains A and B (CycleGAN); each     val                fixed validation items: A|G_A(A)|B|G_B(B)
                domain split 90/10 by name
==============  ===================================  =================  =========================================
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from leangen.data.batch import Batch, collate, item_image
from leangen.data.splits import train_val
from leangen.utils.registry import Registry

_BUILTIN_RE = re.compile(r"openmoji(?P<seg>-seg|-edges|-faces2animals)?(?:-(?P<res>\d+))?(?:-n(?P<n>\d+))?")


def is_builtin(source: str) -> bool:
    """Whether ``source`` names a built-in dataset: ``openmoji[-R][-nN]``, ``openmoji-seg[-R][-nN]``,
    ``openmoji-edges[-R][-nN]`` or ``openmoji-faces2animals[-R][-nN]``."""
    return _BUILTIN_RE.fullmatch(str(source)) is not None


def open_source(source: Any, resolution: int | None = None, *, cache_dir: str | os.PathLike | None = None) -> Any:
    """A dataset object from a path (zip or folder), a built-in name, or a dataset object (returned as is).

    Built-ins: ``openmoji`` (glyph images), ``openmoji-seg`` / ``openmoji-edges`` (label map -> glyph pairs) and
    ``openmoji-faces2animals`` (unpaired faces / animals), with an optional ``-<R>`` resolution and ``-n<N>`` subset,
    e.g. ``openmoji-seg-32-n64``. A folder with ``trainA/`` and ``trainB/`` (CycleGAN's layout) opens as unpaired
    data.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = Path(source).expanduser()
    m = _BUILTIN_RE.fullmatch(str(source))
    if not path.exists() and m is not None:
        res = int(m["res"]) if m["res"] else resolution
        if res is None:
            raise ValueError(f"the built-in {source!r} dataset needs a resolution, e.g. {source}-64")
        if resolution is not None and res != resolution:
            raise ValueError(f"{source!r} is at {res}px but the model works at {resolution}px")
        n = int(m["n"]) if m["n"] else None
        if m["seg"] == "-faces2animals":
            from leangen.data.unpaired import openmoji_unpaired

            return openmoji_unpaired(res, max_images=n, cache_dir=cache_dir)
        if m["seg"]:
            from leangen.data.paired import openmoji_edges, openmoji_seg

            build = openmoji_edges if m["seg"] == "-edges" else openmoji_seg
            return build(res, max_images=n, cache_dir=cache_dir)
        from leangen.data.dataset import ImageDataset
        from leangen.data.create import openmoji_zip

        return ImageDataset(openmoji_zip(res, cache_dir=cache_dir, max_images=n), res)
    from leangen.data.paired_folders import is_pairs_folder, open_pairs

    if is_pairs_folder(path):  # a paired folder (``leangen dataset create-pairs``)
        return open_pairs(path)
    from leangen.data.unpaired import is_unpaired_folder, open_unpaired_folder

    if is_unpaired_folder(path):  # CycleGAN's trainA/ + trainB/
        return open_unpaired_folder(path, resolution)
    from leangen.data.dataset import open_dataset

    return open_dataset(source, resolution=resolution, cache_dir=cache_dir)


def is_paired(dataset: Any) -> bool:
    """Whether items carry a label map (``{"image", "condition"}`` dicts)."""
    return len(dataset) > 0 and isinstance(dataset[0], dict) and "condition" in dataset[0]


def is_unpaired(dataset: Any) -> bool:
    """Whether items carry images of two domains (``{"image", "image_b"}`` dicts, ``leangen.data.unpaired``)."""
    return len(dataset) > 0 and isinstance(dataset[0], dict) and "image_b" in dataset[0]


@dataclass
class TaskData:
    """The splits a run trains and evaluates on. ``metric_data`` is what metrics use (see the task table)."""

    train: Any
    val: Any
    metric_data: Any
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


#: Task classes by name (``@TASKS.register`` below; a new task registers the same way).
TASKS: Registry = Registry("task")


class Task:
    """Base class; see the module docstring. Subclasses set the class attributes and may override the methods."""

    name: ClassVar[str] = ""
    default_metrics: ClassVar[tuple[str, ...]] = ()  # measured at every training snapshot unless told otherwise
    eval_metrics: ClassVar[tuple[str, ...]] = ()     # what ``leangen eval`` measures unless told (may cost more)
    metric_split: ClassVar[str] = "val"        # "all" | "train" | "val"
    preview_at_start: ClassVar[bool] = False
    model_kind: ClassVar[str] = ""             # PretrainedModel.kind this task's models have

    def open(self, source: Any, resolution: int | None, *, cache_dir: str | os.PathLike | None = None,
             name: str | None = None) -> TaskData:
        """Open the splits of ``source`` (see ``open_source``); ``name`` names in-memory datasets in run names."""
        dataset = open_source(source, resolution, cache_dir=cache_dir)
        self._check_kind(dataset, source)
        name = getattr(dataset, "name", None) or name or Path(str(source)).stem
        if self.metric_split == "all":
            return TaskData(dataset, dataset, dataset, name)
        train, val = train_val(dataset)
        return TaskData(train, val, val, name)

    def _check_kind(self, dataset: Any, source: Any) -> None:
        if len(dataset) == 0:
            raise ValueError(f"the dataset {source!s} is empty")
        if is_paired(dataset):
            raise ValueError(f"{source!s} holds label map -> image pairs; the {self.name} task trains on images "
                             f"(use an image dataset, e.g. openmoji)")
        if is_unpaired(dataset):
            raise ValueError(f"{source!s} holds two unpaired image domains (A and B); the {self.name} task trains "
                             f"on one set of images (give one domain's folder, e.g. {source!s}/trainB)")

    def split(self, data: TaskData, which: str) -> Any:
        """``all`` (train + val), ``train``, ``val`` or ``metric`` (the task's metric split)."""
        if which == "metric":
            return data.metric_data
        if which == "all":
            return data.train if data.train is data.val else data.train.dataset
        if which in ("train", "val"):
            return getattr(data, which)
        raise ValueError(f"unknown split {which!r}: expected all, train or val")

    def check_batch(self, batch: Batch, model: Any) -> None:
        """``ValueError`` when the first batch does not fit the model (checked once, on the first batch)."""
        from leangen.models.pretrained import capability

        res, ch = capability(model, "img_resolution"), capability(model, "img_channels")
        width = capability(model, "img_width") or res  # non-square translators (Cityscapes 1:2) give their width
        if res is not None and tuple(batch.image.shape[1:]) != (ch, res, width):
            raise ValueError(f"dataset images are {tuple(batch.image.shape[1:])} but the model makes "
                             f"({ch}, {res}, {width}); recreate the dataset at {res}px")

    def preview_inputs(self, data: TaskData, n: int) -> dict[str, Any]:
        """Inputs of the sample grids: ``{"seeds": [...]}`` or ``{"batch": Batch}``; fixed for the whole run."""
        return {"seeds": list(range(n))}

    def preview_grid(self, outputs: torch.Tensor, inputs: dict[str, Any], data: TaskData) -> torch.Tensor:
        """What goes into ``fakes*.png``: float ``[N, 3, H, W]`` in [-1, 1]."""
        return outputs

    def reals(self, data: TaskData, n: int, seed: int) -> torch.Tensor:
        """A fixed selection of training images for ``reals.png``: float ``[n, 3, H, W]`` in [-1, 1]."""
        total = len(data.train)
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()
        return collate([data.train[i] for i in idx]).image_float


@TASKS.register
class UnconditionalTask(Task):
    name = "unconditional"
    metric_split = "all"  # StyleGAN's protocol: generated images against the training images
    eval_metrics = ("fid2k",)  # not at every snapshot by default: 2k Inception passes cost minutes on a CPU
    preview_at_start = True
    model_kind = "generator"


@TASKS.register
class LikelihoodTask(Task):
    name = "likelihood"
    default_metrics = eval_metrics = ("bpd",)
    model_kind = "likelihood"

    def preview_inputs(self, data: TaskData, n: int) -> dict[str, Any]:
        return {"seeds": list(range(min(n, 16)))}


@TASKS.register
class PairedTask(Task):
    name = "paired"
    default_metrics = ("psnr",)
    eval_metrics = ("psnr", "l1")
    model_kind = "translator"

    def _check_kind(self, dataset: Any, source: Any) -> None:
        if len(dataset) == 0:
            raise ValueError(f"the dataset {source!s} is empty")
        if not is_paired(dataset):
            what = "two unpaired image domains" if is_unpaired(dataset) else "images only"
            raise ValueError(f"{source!s} holds {what}; the paired task needs label map -> image pairs "
                             f"(e.g. the built-in openmoji-seg)")

    def check_batch(self, batch: Batch, model: Any) -> None:
        super().check_batch(batch, model)
        if batch.condition is None:
            raise ValueError("paired training needs label maps in the batch")
        from leangen.models.pretrained import capability

        if batch.instances is not None and not capability(model, "instance_edge"):
            import warnings

            warnings.warn("the data has instance maps but the model has no instance-edge input "
                          "(instance_edge=False); they are ignored", stacklevel=2)
        k = capability(model, "num_classes")
        if k is not None and int(batch.condition.max()) >= k:
            raise ValueError(f"the data has label id {int(batch.condition.max())} but the model takes {k} classes; "
                             f"set the translator's num_classes to at least {int(batch.condition.max()) + 1}")

    def preview_inputs(self, data: TaskData, n: int) -> dict[str, Any]:
        n = min(n, len(data.val), 16)
        return {"batch": collate([data.val[i] for i in range(n)])}

    def preview_grid(self, outputs: torch.Tensor, inputs: dict[str, Any], data: TaskData) -> torch.Tensor:
        batch: Batch = inputs["batch"]
        from leangen.data.paired import colorize_labels

        palette = getattr(data.val, "palette", None)
        k = int(getattr(data.val, "num_classes", int(batch.condition.max()) + 1))  # type: ignore[union-attr]
        labels = colorize_labels(batch.condition, palette, k).float() / 127.5 - 1  # type: ignore[arg-type]
        # Rows of (label map, output, target), interleaved so a square grid reads in triples.
        return torch.stack([labels, outputs.float().cpu(), batch.image_float.cpu()], dim=1).flatten(0, 1)


@TASKS.register
class UnpairedTask(Task):
    """Two image domains without correspondence (CycleGAN). The model is the A -> B translator (``G_A``), an
    image-input ``Translator`` (``input_kind == "image"``). No default metric: nothing here scores a translation
    without a target."""

    name = "unpaired"
    model_kind = "translator"

    def open(self, source: Any, resolution: int | None, *, cache_dir: str | os.PathLike | None = None,
             name: str | None = None) -> TaskData:
        dataset = open_source(source, resolution, cache_dir=cache_dir)
        self._check_kind(dataset, source)
        train, val = dataset.split() if hasattr(dataset, "split") else train_val(dataset)
        name = getattr(dataset, "name", None) or name or Path(str(source)).stem
        return TaskData(train, val, val, name, extra={"all": dataset})

    def _check_kind(self, dataset: Any, source: Any) -> None:
        if len(dataset) == 0:
            raise ValueError(f"the dataset {source!s} is empty")
        if not is_unpaired(dataset):
            what = "label map -> image pairs" if is_paired(dataset) else "one set of images"
            raise ValueError(f"{source!s} holds {what}; the unpaired task needs two image domains: a folder with "
                             f"trainA/ and trainB/ (CycleGAN's layout) or the built-in openmoji-faces2animals")

    def split(self, data: TaskData, which: str) -> Any:
        if which == "all" and "all" in data.extra:
            return data.extra["all"]
        return super().split(data, which)

    def check_batch(self, batch: Batch, model: Any) -> None:
        super().check_batch(batch, model)
        if batch.image_b is None:
            raise ValueError("unpaired training needs a domain-B image in every batch item (image_b)")
        if tuple(batch.image_b.shape) != tuple(batch.image.shape):
            raise ValueError(f"domain B images are {tuple(batch.image_b.shape[1:])} but domain A images are "
                             f"{tuple(batch.image.shape[1:])}")
        from leangen.models.pretrained import capability

        if capability(model, "input_kind") != "image":
            raise ValueError(f"the unpaired task translates images; {type(model).__name__} takes label maps "
                             f"(build it with in_channels=3)")

    def preview_inputs(self, data: TaskData, n: int) -> dict[str, Any]:
        # 1, 4 or 16 items: a grid of 4, 16 or 64 images has 2, 4 or 8 columns, so its rows hold whole quadruples.
        # Validation items 0, 1, ... are A images 0, 1, ... (then again, with other B partners) with distinct B images.
        n = max(k for k in (1, 4, 16) if k <= max(1, min(n, len(data.val))))
        return {"batch": collate([data.val[i] for i in range(n)])}

    def preview_grid(self, outputs: torch.Tensor, inputs: dict[str, Any], data: TaskData) -> torch.Tensor:
        """``outputs``: ``[N, 3, H, W]`` = G_A(A) or ``[2N, 3, H, W]`` = G_A(A) then G_B(B); the grid interleaves
        A | G_A(A) (| B | G_B(B)) per item."""
        batch: Batch = inputs["batch"]
        n = len(batch)
        cols = [batch.image_float.cpu(), outputs[:n].float().cpu()]
        if outputs.shape[0] == 2 * n:
            cols += [batch.image_b_float.cpu(), outputs[n:].float().cpu()]
        return torch.stack(cols, dim=1).flatten(0, 1)

    def reals(self, data: TaskData, n: int, seed: int) -> torch.Tensor:
        """Training images of both domains, alternating A and B: float ``[n, 3, H, W]`` in [-1, 1]."""
        gen = torch.Generator().manual_seed(seed)
        half = (n + 1) // 2
        sides = []
        for domain in (data.train.domain_a, data.train.domain_b):
            idx = torch.randperm(len(domain), generator=gen)[:half]
            idx = idx.repeat((half + len(idx) - 1) // len(idx))[:half]  # a domain smaller than half the grid
            sides.append(collate([domain[int(i)] for i in idx]).image_float)
        return torch.stack(sides, dim=1).flatten(0, 1)[:n]


def get_task(name: str) -> Task:
    """A new task of ``name`` (``TASKS``); ``UnknownName`` (a ``KeyError`` and ``ValueError``) otherwise."""
    return TASKS[name]()


def task_for_model(model: Any) -> Task:
    """The task of a loaded model, from its ``kind`` (generator, likelihood, translator; a translator that takes
    images, ``input_kind == "image"``, is an unpaired one)."""
    from leangen.models.pretrained import model_kind, model_task

    name = model_task(model)
    if name is None:
        raise ValueError(f"a {type(model).__name__} ({model_kind(model)}) is not a model that generates, scores or "
                         f"translates images")
    return get_task(name)


def open_eval_data(data: Any, model: Any, split: str | None = None, resolution: int | None = None, *,
                   cache_dir: str | os.PathLike | None = None) -> Any:
    """The dataset ``leangen eval`` measures ``model`` on: ``split`` of ``data`` (default: the task's metric split)."""
    from leangen.models.pretrained import capability

    task = task_for_model(model)
    td = task.open(data, resolution or capability(model, "img_resolution"), cache_dir=cache_dir)
    return task.split(td, split or "metric")


__all__ = ["Task", "TaskData", "TASKS", "get_task", "task_for_model", "open_source", "open_eval_data", "is_paired",
           "is_unpaired", "is_builtin", "item_image"]
