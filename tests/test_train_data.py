"""The training data stream's CUDA prefetch: the batch after the current one is loaded (and its copy started)
ahead, without changing the order of batches or the position a snapshot records."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from leangen.data.batch import Batch
from leangen.train.data import BatchStream


def dataset(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone())


def test_prefetch_keeps_order_and_position(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = BatchStream(dataset(), 3, seed=1, mirror=True)
    ahead = BatchStream(dataset(), 3, seed=1, mirror=True, device="cuda")  # a CUDA stream, minus the copy
    copies: list[Batch] = []

    def fake_copy(batch: Batch) -> Batch:
        copies.append(batch)
        return batch

    monkeypatch.setattr(ahead, "_to_device", fake_copy)
    for i in range(1, 8):
        a, b = plain.next(), ahead.next()
        assert torch.equal(a.image, b.image)
        assert ahead.position == plain.position == 3 * i  # the batch loaded ahead is not consumed yet
        assert len(copies) == i + 1  # ... but its copy has been started
    # A stream rebuilt at the recorded position continues where the prefetching one would have.
    resumed = BatchStream(dataset(), 3, seed=1, mirror=True, position=ahead.position)
    assert torch.equal(resumed.next().image, plain.next().image)


def test_loading_reads_no_tensor_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index arithmetic stays in Python: ``int(tensor)`` per item would be a host read per sample."""
    stream = BatchStream(dataset(), 4, seed=0, mirror=True)
    calls: list[int] = []
    orig = torch.Tensor.__int__

    def index(t: torch.Tensor) -> int:
        calls.append(1)
        return orig(t)

    monkeypatch.setattr(torch.Tensor, "__int__", index)
    stream.next()
    assert calls == []
