"""The pix2pix/CycleGAN ResNet and U-Net translators: reference sizes, both input kinds, training through the one
loop with exact resume, and the channel groups the pruner relies on."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import leangen
from leangen.models.base import Translator
from leangen.models.resnet_generator import ResnetGenerator
from leangen.models.unet_generator import UnetGenerator
from leangen.profile import count_macs, count_params
from leangen.registry import get_preset
from leangen.train import TrainOptions, train


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "leangen-cache"))


def _meta(model_type: type, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return model_type(**kw)


def test_reference_parameter_and_mac_counts() -> None:
    # pix2pix/CycleGAN with 3-channel image input: 11,378,179 (the "11.4M" of GAN Compression) and 7,837,699.
    assert count_params(_meta(ResnetGenerator, in_channels=3)) == 11_378_179
    assert count_params(_meta(ResnetGenerator, in_channels=3, n_blocks=6)) == 7_837_699
    # The presets take one-hot label maps of 9 classes: 6 more input channels on the 7x7 stem (6 * 49 * 64).
    with torch.device("meta"):
        assert count_params(get_preset("resnet9-256").build()) == 11_378_179 + 6 * 49 * 64
        assert count_params(get_preset("resnet6-256").build()) == 7_837_699 + 6 * 49 * 64
    assert count_params(_meta(UnetGenerator, in_channels=3)) == 54_413_955
    g = _meta(ResnetGenerator, in_channels=3)
    x = torch.zeros(1, 3, 256, 256, device="meta")
    # 56.8 G as GAN Compression counts it (transposed convs at their output resolution); 49.55 G executed.
    assert count_macs(g, (x,), convention="output_resolution") / 1e9 == pytest.approx(56.80, abs=0.005)
    assert count_macs(g, (x,)) / 1e9 == pytest.approx(49.55, abs=0.005)


def test_label_and_image_inputs() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 9, (2, 32, 32))
    for model in (ResnetGenerator(resolution=32, ngf=8, n_blocks=2), UnetGenerator(resolution=32, ngf=8, num_downs=5)):
        out = model.translate(labels)
        assert out.shape == (2, 3, 32, 32) and out.abs().max() < 1
        # a float one-hot map is the same input as the ids
        onehot = torch.nn.functional.one_hot(labels, 9).permute(0, 3, 1, 2).float()
        assert torch.allclose(model.eval()(onehot), out, atol=1e-6)
    img = ResnetGenerator(resolution=32, ngf=8, n_blocks=2, in_channels=3).eval()
    assert img(torch.rand(1, 3, 32, 32) * 2 - 1).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="divisible"):
        ResnetGenerator(resolution=30)
    with pytest.raises(ValueError, match="positive widths"):
        ResnetGenerator(resolution=32, ngf=8, n_blocks=2, channels=[8, 16])


def test_channel_groups_size_every_tensor_exactly_once_per_dim() -> None:
    """Every weight dimension that depends on a width is declared by exactly one group, with the right size."""
    g = ResnetGenerator(resolution=32, ngf=4, n_blocks=3, norm_affine=True, channels=[3, 5, 7, 2, 4, 6, 9, 11])
    state = g.state_dict()
    seen: dict[tuple[str, int], int] = {}
    for group in g.channel_groups():
        width = g.widths[group.index]
        for name, dim in group.slices:
            assert state[name].shape[dim] == width, (name, dim, group.index)
            seen[(name, dim)] = seen.get((name, dim), 0) + 1
    assert all(v == 1 for v in seen.values())
    # every width-dependent dim is covered: only the stem input, to_rgb output and kernels are not
    for name, t in state.items():
        for dim, size in enumerate(t.shape):
            if (name, dim) not in seen:
                assert (name, dim) in {("stem.weight", 1), ("to_rgb.weight", 0), ("to_rgb.bias", 0)} or dim >= 2


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_channel_groups_tile_every_width_dependent_dim(norm: str) -> None:
    """U-Net: every width-dependent dim is declared once per segment, and the segments of a skip-concatenated decoder
    input (skip at offset 0, upsampled features after it) tile it exactly, the fixed outermost skip included."""
    g = UnetGenerator(resolution=32, ngf=4, num_downs=5, norm=norm, norm_affine=True, channels=[3, 5, 7, 6, 4, 9, 2])
    assert g.widths == [3, 5, 7, 6, 4, 9, 2] and g.up[4].out_channels == 6 and g.up[1].out_channels == 2
    state = g.state_dict()
    segments: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for group in g.channel_groups():
        width = g.widths[group.index]
        for name, dim, *offset in group.slices:
            segments.setdefault((name, dim), []).append((offset[0] if offset else 0, width))
    for (name, dim), segs in segments.items():
        segs.sort()
        assert all(a + w == b for (a, w), (b, _) in zip(segs, segs[1:])), (name, dim)  # adjacent, no overlap
        end = segs[-1][0] + segs[-1][1]
        fixed = segs[0][0]  # up.0 reads the fixed ngf-wide outermost skip before decoder level 1
        assert end == state[name].shape[dim] and fixed in ((0,) if name != "up.0.weight" else (4,)), (name, dim)
    # only the input one-hot, the fixed outermost / innermost encoder widths, RGB and kernels are left undeclared
    allowed = {("down.0.weight", 1), ("down.0.weight", 0), ("down.0.bias", 0), ("down.1.weight", 1),
               ("down.4.weight", 0), ("down.4.bias", 0), ("up.4.weight", 0), ("up.0.weight", 1), ("up.0.bias", 0)}
    for name, t in state.items():
        for dim in range(min(t.dim(), 2)):
            if (name, dim) not in segments:
                assert (name, dim) in allowed or name.endswith("num_batches_tracked"), (name, dim)


def _opts(preset: str, root: Path, **kw) -> TrainOptions:
    return TrainOptions(preset=preset, data="openmoji-seg-32-n64", outdir=str(root), batch=4, tick=0.008, snap=1,
                        device="cpu", progress=False, grid=4, metrics=[], **kw)


def test_resnet_tiny_trains_resumes_exactly_and_loads(tmp_path: Path) -> None:
    straight = train(_opts("resnet-tiny32", tmp_path / "a", steps=3))
    first = train(_opts("resnet-tiny32", tmp_path / "b", steps=2))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=3, device="cpu", progress=False))
    for role in ("G", "D"):
        a = load_file(str(straight.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        b = load_file(str(resumed.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        assert all(torch.equal(a[k], b[k]) for k in a), role
    model = leangen.load(straight.run_dir)
    assert isinstance(model, Translator) and model.num_classes == 9
    assert model.translate(torch.zeros(1, 32, 32, dtype=torch.long)).shape == (1, 3, 32, 32)


def test_unet_tiny_trains_and_loads(tmp_path: Path) -> None:
    run = train(_opts("unet-tiny32", tmp_path, steps=1)).run_dir
    model = leangen.load(run)
    assert isinstance(model, UnetGenerator) and model.translate(torch.zeros(1, 32, 32, dtype=torch.long)).shape == \
        (1, 3, 32, 32)
