"""The training data stream: infinite, shuffled, sharded over ranks and resumable to the exact sample.

It yields ``leangen.data.batch.Batch`` records (uint8 images, plus label maps for paired data); ``--mirror`` flips
image and label map together. The order is a pure function of ``(seed, epoch)`` (``DistributedSampler``'s permutation, one shard per rank), so
the stream's whole state is one integer: how many samples this rank has consumed (``position``). A resumed run
rebuilds the stream at that position and sees the same images in the same order as an uninterrupted run.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from leangen.data.batch import Batch, collate


class _Indexed(Dataset):
    """Index ``i >= N`` is item ``i - N`` mirrored (``--mirror``), the StyleGAN x-flip convention."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Batch:
        one = collate([self.dataset[i % self.n]])
        return one.flip_where(torch.tensor([i >= self.n]))


def _cat(batches: list[Batch]) -> Batch:
    def cat(key: str) -> torch.Tensor | None:
        parts = [getattr(b, key) for b in batches]
        return None if parts[0] is None else torch.cat(parts)

    return Batch(torch.cat([b.image for b in batches]), cat("condition"), cat("instances"), cat("image_b"))


class BatchStream:
    """This rank's batches as ``Batch`` records on ``device``, forever.

    Args:
        dataset: items as ``leangen.data.batch`` describes (images, ``(image, label)`` or paired dicts);
            ``get_batch(indices)`` is used when the dataset has it (one gather from memory instead of B item calls).
        batch: images per rank per step.
        seed, rank, world_size: the permutation of epoch ``e`` is ``DistributedSampler(seed=seed).set_epoch(e)``,
            sharded by rank.
        mirror: double the index space with x-flipped copies.
        workers: DataLoader worker processes (0: load in this process).
        position: samples this rank has already consumed (resume).
    """

    def __init__(self, dataset: Dataset, batch: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 mirror: bool = False, workers: int = 0, device: torch.device | str = "cpu",
                 position: int = 0) -> None:
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n == 0:
            raise ValueError("the dataset is empty")
        self.batch, self.seed, self.rank, self.world_size = batch, seed, rank, world_size
        self.mirror, self.device = mirror, torch.device(device)
        self.virtual_len = self.n * (2 if mirror else 1)
        # drop_last=False pads every shard to the same length, so every rank takes the same number of steps per epoch
        self._sampler = DistributedSampler(range(self.virtual_len), num_replicas=world_size, rank=rank,  # type: ignore[arg-type]
                                           shuffle=True, seed=seed, drop_last=False)
        self.shard_len = self._sampler.num_samples
        self._position = int(position)  # samples loaded; ``position`` subtracts a batch loaded ahead
        self._ahead: Batch | None = None
        self._epoch_cache: tuple[int, list[int]] | None = None
        self._loader_iter: Iterator[Batch] | None = None
        if workers > 0:
            # A private generator: DataLoader would otherwise draw its worker base seed from the global RNG,
            # which would make a resumed run's RNG stream differ from an uninterrupted one.
            loader = DataLoader(_Indexed(dataset), batch_sampler=self._index_batches(self._position),  # type: ignore[arg-type]
                                num_workers=workers, collate_fn=_cat, generator=torch.Generator(),
                                pin_memory=self.device.type == "cuda", persistent_workers=True)
            self._loader_iter = iter(loader)

    @property
    def epoch(self) -> int:
        return self.position // self.shard_len

    def _epoch_indices(self, epoch: int) -> list[int]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._sampler.set_epoch(epoch)
            self._epoch_cache = (epoch, list(iter(self._sampler)))
        return self._epoch_cache[1]

    def _indices_at(self, position: int) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch:  # a batch may span epochs (and a tiny dataset several of them)
            epoch, offset = divmod(position, self.shard_len)
            take = self._epoch_indices(epoch)[offset:offset + self.batch - len(out)]
            out.extend(take)
            position += len(take)
        return out

    def _index_batches(self, position: int) -> Iterator[list[int]]:
        while True:
            yield self._indices_at(position)
            position += self.batch

    def _load(self, indices: list[int]) -> Batch:
        # Index arithmetic in Python: no tensor is read back while loading.
        raw = [i % self.n for i in indices]
        flip = [i >= self.n for i in indices]
        if hasattr(self.dataset, "get_batch"):
            batch = collate(self.dataset.get_batch(torch.tensor(raw, dtype=torch.long)))  # type: ignore[attr-defined]
        else:
            batch = collate([self.dataset[i] for i in raw])
        return batch.flip_where(torch.tensor(flip)) if any(flip) else batch

    @property
    def position(self) -> int:
        """Samples this rank has consumed (a batch loaded ahead for the device does not count)."""
        return self._position - (self.batch if self._ahead is not None else 0)

    def next_cpu(self) -> Batch:
        """The next batch as stored (CPU) and advance the position."""
        if self._loader_iter is not None:
            batch = next(self._loader_iter)
        else:
            batch = self._load(self._indices_at(self._position))
        self._position += self.batch
        return batch

    def _to_device(self, batch: Batch) -> Batch:
        """Start copying ``batch`` to the CUDA device without waiting: from pinned memory (the DataLoader's workers
        pin it already) the copy is asynchronous."""
        if self._loader_iter is None:
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def next(self) -> Batch:
        """The next batch on the device (images stay uint8: ``batch.image_float`` gives [-1, 1]).

        On CUDA the batch after it is loaded and its copy to the device started before this one is returned, so
        loading overlaps the step and the step never waits for a host-to-device copy."""
        if self.device.type != "cuda":
            return self.next_cpu().to(self.device)
        batch = self._ahead if self._ahead is not None else self._to_device(self.next_cpu())
        self._ahead = None  # position counts the batch as consumed from here on
        self._ahead = self._to_device(self.next_cpu())
        return batch
