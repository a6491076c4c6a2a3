"""Image-to-image translators: ASAP-Net's exact reference sizes, its pixelwise machinery against a plain per-pixel
reference, and training / resuming / loading of the tiny presets through the one loop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F

import leangen
from leangen.models.base import Translator
from leangen.ops.pixelwise import mlp_param_count, periodic_encoding, tent_downsample, tiled_mlp
from leangen.profile.inputs import example_inputs
from leangen.profile.macs import count_macs
from leangen.registry import get_preset
from leangen.train import TrainOptions, train
from safetensors.torch import load_file

# Reference counts of the official generator (reference notes §2.3): parameters and GMACs (conv + bmm).
ASAP_REFERENCE = {"asapnet-facades-512": (82_007_363, 26.07), "asapnet-facades-1024": (82_269_763, 37.91),
                  "asapnet-cityscapes-256x512": (83_201_411, 48.88)}
# Our executed GMACs as docs/families.md and benchmarks/results/translation-cpu.json state them (2 decimals). The
# official notes' 26.07 is the sum of rounded parts (22.25 + 3.83 = 26.08); 37.91 vs our 37.93 is stated beside it.
ASAP_STATED_GMACS = {"asapnet-facades-512": 26.08, "asapnet-facades-1024": 37.93, "asapnet-cityscapes-256x512": 48.88}


def meta_model(preset: str) -> torch.nn.Module:
    with torch.device("meta"):
        return get_preset(preset).build("G").eval()


@pytest.mark.parametrize("preset", sorted(ASAP_REFERENCE))
def test_asapnet_paper_presets_have_the_reference_size(preset: str) -> None:
    params, gmacs = ASAP_REFERENCE[preset]
    g = meta_model(preset)
    assert g.num_params() == params
    args, kwargs = example_inputs(g, 1, "meta")
    counted = count_macs(g, args, kwargs) / 1e9
    assert round(counted, 2) == ASAP_STATED_GMACS[preset]  # exact to the precision the docs state
    assert abs(counted - gmacs) < 0.025  # and within the rounding of the official notes' figure


def test_asapnet_tile_and_grid_follow_the_official_rule() -> None:
    # S = height / 16 -> a 16-row grid; MLP [labels + 4 log2 S, 64, 64, 64, 64, 3]
    for preset, tile, fixed, first in (("asapnet-facades-512", 32, 2, 33), ("asapnet-facades-1024", 64, 4, 37),
                                       ("asapnet-cityscapes-256x512", 16, 1, 51),
                                       ("asapnet-cityscapes-1024x2048", 64, 4, 59)):
        g = meta_model(preset)
        assert (g.tile, g.fixed_ds, g.hr_channels) == (tile, fixed, [first, 64, 64, 64, 64, 3])
        assert g.img_height // g.tile == 16


def test_periodic_encoding_is_periodic_per_tile_and_sized_per_call() -> None:
    enc = periodic_encoding(16, 24, 8)
    assert enc.shape == (1, 12, 16, 24)
    assert torch.allclose(enc[..., :8, :8], enc[..., 8:16, 16:24])
    assert not torch.allclose(enc[..., :4, :4], enc[..., 4:8, 4:8])
    # period-2 channels: cos(pi * x) = +-1 alternating
    assert torch.allclose(enc[0, 8, 0, :4], torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-6)


def test_tent_downsample_keeps_constants_and_averages() -> None:
    x = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(tent_downsample(x, 4), torch.full((1, 2, 2, 2), 3.0))
    ramp = torch.arange(8.0).expand(1, 1, 8, 8).contiguous()
    assert tent_downsample(ramp, 2)[0, 0, 0].tolist() == pytest.approx([0.75, 2.5, 4.5, 6.25])  # reflect at borders


def test_tiled_mlp_equals_a_per_pixel_mlp_with_nearest_upsampled_parameters() -> None:
    torch.manual_seed(0)
    chans, tile = [5, 7, 3], 4
    x = torch.randn(2, 5, 8, 12)
    params = torch.randn(2, mlp_param_count(chans), 2, 3)
    out = tiled_mlp(x, params, chans, tile)
    up = F.interpolate(params, scale_factor=tile, mode="nearest")  # [B, P, H, W]
    for b, i, j in ((0, 0, 0), (1, 7, 11), (0, 5, 3), (1, 2, 9)):
        p, h = up[b, :, i, j], x[b, :, i, j]
        b1, w1 = p[:7], p[7:7 + 35].reshape(5, 7)
        b2, w2 = p[42:45], p[45:].reshape(7, 3)
        ref = torch.tanh(F.leaky_relu(h @ w1 + b1, 0.01) @ w2 + b2)
        assert torch.allclose(out[b, :, i, j], ref, atol=1e-5)


def test_asapnet_runs_at_a_second_size_as_if_it_were_the_first() -> None:
    torch.manual_seed(0)
    g = get_preset("asapnet-tiny32").build("G").eval()
    small, large = torch.randint(0, g.num_classes, (1, 32, 32)), torch.randint(0, g.num_classes, (1, 48, 64))
    with torch.no_grad():
        fresh = g(large)
        g(small)
        again = g(large)
    assert again.shape == (1, 3, 48, 64) and torch.equal(fresh, again)
    # one-hot input gives the same image as ids
    with torch.no_grad():
        assert torch.allclose(g(F.one_hot(small, g.num_classes).permute(0, 3, 1, 2).float()), g(small), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the 8px tile"):
        g(torch.zeros(1, 30, 32, dtype=torch.long))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One private cache for the module: openmoji-seg-32-n64 is rendered once for every preset."""
    root = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("LEANGEN_CACHE", str(root))
    yield root
    mp.undo()


def _opts(out: Path, preset: str, steps: int, **kw: object) -> TrainOptions:
    return TrainOptions(preset=preset, data="openmoji-seg-32-n64", outdir=str(out), steps=steps, batch=4, tick=0.008,
                        snap=1, device="cpu", progress=False, grid=4, metrics=[], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", ["asapnet-tiny32", "pix2pixhd-tiny32", "spade-tiny32"])
def test_tiny_translator_trains_with_the_multiscale_gan_resumes_and_loads(preset: str, tmp_path: Path,
                                                                          cache: Path) -> None:
    hp = {"gan_weight": 1.0, "fm_weight": 1.0}
    straight = train(_opts(tmp_path / "a", preset, 2, hparams=hp))
    first = train(_opts(tmp_path / "b", preset, 1, hparams=hp))
    resumed = train(TrainOptions(resume=str(first.run_dir), steps=2, device="cpu", progress=False))
    for role in ("G", "G_ema", "D"):
        wa = load_file(str(straight.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        wb = load_file(str(resumed.snapshot / role / "model.safetensors"))  # type: ignore[operator]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), role
    rows = [json.loads(x) for x in (straight.run_dir / "stats.jsonl").read_text().splitlines()]
    assert {"l1", "loss_D", "fm", "loss_G_adv"} <= set(rows[-1])
    model = leangen.load(straight.run_dir)
    assert isinstance(model, Translator) and model.model_type == get_preset(preset).components["G"][0]
    out = model.translate(torch.zeros(2, 32, 32, dtype=torch.long))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


def test_baselines_at_reference_widths() -> None:
    # SPADE Cityscapes 256x512: GAN Compression's table lists the official GauGAN at 93.0 M parameters.
    assert meta_model("spade-cityscapes-256x512").num_params() == pytest.approx(93.0e6, rel=0.002)
    g = meta_model("pix2pixhd-cityscapes-256x512")
    assert g.num_params() == 182_546_755  # ngf 64, 4 downsamplings, 9 residual blocks at 1024 channels, 36 inputs
    for family in ("asapnet", "pix2pixhd", "spade"):
        for setting in ("facades-512", "facades-1024", "cityscapes-256x512", "cityscapes-1024x2048", "tiny32"):
            assert get_preset(f"{family}-{setting}").task == "paired"


def test_asapnet_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from leangen.export import check_translator_onnx, export_translator_onnx

    torch.manual_seed(0)
    g = get_preset("asapnet-tiny32").build("G").eval()
    for one_hot, size in ((False, (32, 48)), (True, (16, 16))):
        path = export_translator_onnx(g, tmp_path / f"asap{int(one_hot)}.onnx", batch=2, size=size, one_hot=one_hot)
        assert check_translator_onnx(g, path, atol=1e-4) <= 1e-4
    with torch.no_grad():  # the check compares something that varies (not a flat image)
        assert g(torch.randint(0, g.num_classes, (1, 32, 48))).std() > 1e-3


def test_perceptual_loss_is_zero_on_identical_images_and_has_gradients() -> None:
    from leangen.train.perceptual import InceptionPerceptual

    try:
        loss = InceptionPerceptual()
    except FileNotFoundError as e:  # the TF-Inception weights are not installed
        pytest.skip(str(e))
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    out = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    value = loss(out, target)
    value.backward()
    assert value > 0 and out.grad is not None and out.grad.abs().sum() > 0
    assert loss(target, target) == 0


def test_vgg19_perceptual_from_a_user_weights_file(tmp_path: Path) -> None:
    from leangen.train.perceptual import VGG19_TAPS, build_perceptual, vgg19_features

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full-model state dict: the classifier is ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = build_perceptual("vgg19", str(path), "cpu")
    assert len(list(loss.parameters())) == 2 * 13 and VGG19_TAPS[-1] == 30  # conv1_1 .. conv5_1, frozen
    assert torch.equal(loss.net[28].weight, state["features.28.weight"])  # conv5_1 carries the file's weights
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    out = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    value = loss(out, target)
    value.backward()
    assert value > 0 and out.grad is not None and out.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in loss.parameters())
    assert loss(target, target) == 0
    # VGG16's layout (features.16 is a pool there), a non-state-dict and a broken file: one clear error each
    torch.save({k: v for k, v in state.items() if not k.startswith("features.16.")}, tmp_path / "vgg16.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    for name, match in (("vgg16.pth", "not a torchvision-layout VGG19 state dict.*missing features.16"),
                        ("list.pth", "not a VGG19 state dict"), ("junk.pth", "not a readable VGG19 state dict")):
        with pytest.raises(ValueError, match=match):
            build_perceptual("vgg19", str(tmp_path / name), "cpu")
    bad = dict(state, **{"features.0.weight": torch.zeros(64, 1, 3, 3)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="wrong shape for features.0.weight"):
        build_perceptual("vgg19", str(tmp_path / "bad.pth"), "cpu")
    with pytest.raises(ValueError, match="needs perceptual_weights"):
        build_perceptual("vgg19", None, "cpu")
    with pytest.raises(ValueError, match="unknown perceptual_net"):
        build_perceptual("vgg16", str(path), "cpu")


def test_instance_edges_reach_generator_and_discriminator() -> None:
    from leangen.models.base import MODEL_TYPES
    from leangen.models.multiscale_discriminator import MultiscaleDiscriminator

    torch.manual_seed(0)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    inst = torch.zeros(1, 32, 32, dtype=torch.long)
    inst[:, :, 16:] = 7  # two instances of one class: only the instance map tells them apart
    for preset in ("asapnet-tiny32", "pix2pixhd-tiny32", "spade-tiny32"):
        model_type, kwargs = get_preset(preset).components["G"]
        g = MODEL_TYPES[model_type](**{**kwargs, "instance_edge": True}).eval()
        with torch.no_grad():
            assert not torch.allclose(g(labels, inst), g(labels), atol=1e-6), preset
            # only boundaries matter: renumbered instances give the same image
            assert torch.allclose(g(labels, inst + 3), g(labels, inst), atol=1e-6), preset
    d = MultiscaleDiscriminator(num_classes=9, width=8, layers=3, instance_edge=True)
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    assert not torch.allclose(d(labels, img, inst)[0][0], d(labels, img)[0][0])
    assert get_preset("asapnet-cityscapes-256x512").components["D"][1]["instance_edge"] is True
