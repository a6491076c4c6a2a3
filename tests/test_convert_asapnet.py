"""tamarott/ASAPNet generator checkpoints -> leangen ASAP-Net, checked against an independent reference of the
official inference path written from the format description (reference notes: official_checkpoints.md, ASAP-Net):
the low-res stream as the official ``nn.Sequential`` (built by index here, both padding layouts), and a functional
per-pixel MLP over ``unfold`` tiles with the official parameter layout and cosine coordinates."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import leangen
from leangen.cli.main import cli
from leangen.convert import ConversionError, StateReader, convert_checkpoint, convert_to_directory, detect_format
from leangen.convert.asapnet import OPTIONS, convert
from leangen.convert.common import Options
from leangen.registry import get_preset


@dataclass(frozen=True)
class Cfg:
    label_nc: int
    edge: bool = False
    lr_instance: bool = False
    pad: str = "zero"            # zero | reflect | replicate
    crop: int = 64
    aspect: int = 1
    learned_ds: int = 4
    lr_width: int = 8
    lr_max: int = 16
    lr_depth: int = 2
    hr_width: int = 8
    hr_depth: int = 3

    @property
    def tile(self) -> int:
        return self.crop // (16 * self.aspect)

    @property
    def hr_channels(self) -> list[int]:
        hr_in = self.label_nc + int(self.edge) - int(self.lr_instance)
        return [hr_in + 4 * int(math.log2(self.tile))] + [self.hr_width] * (self.hr_depth - 1) + [3]


def official_lowres(cfg: Cfg, n_params: int) -> nn.Sequential:
    """The official ``lowres_stream.model`` Sequential: per conv stage [pad], Sequential(conv no bias, affine IN),
    ReLU; then ``lr_depth`` blocks holding ``conv_block`` = Sequential([pad], Sequential(conv, IN), ReLU); a 1x1
    conv."""
    def pad() -> list[nn.Module]:
        return {"zero": [], "reflect": [nn.ReflectionPad2d(1)], "replicate": [nn.ReplicationPad2d(1)]}[cfg.pad]

    def conv(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=1 if cfg.pad == "zero" else 0, bias=False),
                             nn.InstanceNorm2d(cout, affine=True))

    class Block(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.conv_block = nn.Sequential(*pad(), conv(dim, dim, 1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv_block(x)  # no skip connection

    layers: list[nn.Module] = [*pad(), conv(cfg.label_nc + int(cfg.edge), cfg.lr_width, 1), nn.ReLU()]
    n_down, width = int(math.log2(cfg.learned_ds)), cfg.lr_width
    for i in range(n_down):
        out = cfg.lr_max if i == n_down - 1 else cfg.lr_width
        layers += [*pad(), conv(width, out, 2), nn.ReLU()]
        width = out
    layers += [Block(width) for _ in range(cfg.lr_depth)] + [nn.Conv2d(width, n_params, 1)]
    return nn.Sequential(*layers)


def n_mlp_params(channels: list[int]) -> int:
    return sum(ci * co + co for ci, co in zip(channels[:-1], channels[1:]))


def official_state(cfg: Cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``latest_net_G.pth`` state dict for ``cfg`` with random weights (scaled so the MLP does not saturate)."""
    g = torch.Generator().manual_seed(seed)
    seq = official_lowres(cfg, n_mlp_params(cfg.hr_channels))
    state = {}
    for k, v in seq.state_dict().items():
        r = torch.randn(v.shape, generator=g)
        if v.dim() == 4:
            r = r / math.sqrt(v[0].numel()) * (0.25 if v.shape[-1] == 1 else 1.0)
        elif k.endswith("weight"):
            r = 1 + 0.2 * r
        else:
            r = 0.2 * r
        state[f"lowres_stream.model.{k}"] = r
    return state


def tent(x: torch.Tensor, s: int) -> torch.Tensor:
    """Separable tent filter [1, 3, .., 2s-1, 2s-1, .., 3, 1]/sum, reflect pad s//2, stride s (rows, then columns)."""
    ramp = torch.arange(1, 2 * s, 2, dtype=torch.float32)
    k = torch.cat([ramp, ramp.flip(0)])
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, [s // 2] * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), stride=(1, s), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), stride=(s, 1), groups=c)


def edges(inst: torch.Tensor) -> torch.Tensor:
    """1 where a left/right/up/down neighbour has another instance id (borders compare with themselves)."""
    p = F.pad(inst[:, None].float(), [1, 1, 1, 1], mode="replicate")[:, 0]
    c = p[:, 1:-1, 1:-1]
    e = (c != p[:, 1:-1, 2:]) | (c != p[:, 1:-1, :-2]) | (c != p[:, 2:, 1:-1]) | (c != p[:, :-2, 1:-1])
    return e[:, None].float()


def coords(h: int, w: int, s: int) -> torch.Tensor:
    """[1, 4 log2 s, h, w]: for f = s, s/2, .., 2: cos x, sin x, cos y, sin y of 2 pi (pos mod f) / f."""
    out, f = [], s
    x, y = torch.arange(w).float(), torch.arange(h).float()
    while f > 1:
        ax, ay = 2 * math.pi * (x % f) / f, 2 * math.pi * (y % f) / f
        out += [ax.cos().expand(h, w), ax.sin().expand(h, w), ay.cos()[:, None].expand(h, w),
                ay.sin()[:, None].expand(h, w)]
        f //= 2
    return torch.stack(out)[None]


@torch.no_grad()
def official_forward(cfg: Cfg, state: dict[str, torch.Tensor], labels: torch.Tensor,
                     inst: torch.Tensor | None = None) -> torch.Tensor:
    chans = cfg.hr_channels
    seq = official_lowres(cfg, n_mlp_params(chans))
    seq.load_state_dict({k[len("lowres_stream.model."):]: v for k, v in state.items()})
    x = F.one_hot(labels, cfg.label_nc).permute(0, 3, 1, 2).float()
    if cfg.edge:
        x = torch.cat([x, edges(inst)], 1)
    fixed = cfg.tile // cfg.learned_ds
    params = seq(tent(x, fixed) if fixed > 1 else x)                     # [B, P, H/S, W/S]
    hr = x[:, :-1] if cfg.lr_instance else x
    b, _, h, w = hr.shape
    hr = torch.cat([hr, coords(h, w, cfg.tile).expand(b, -1, -1, -1)], 1)
    k, gh, gw = cfg.tile, h // cfg.tile, w // cfg.tile
    out = hr.unfold(2, k, k).unfold(3, k, k).permute(0, 2, 3, 4, 5, 1).reshape(b, gh, gw, k * k, chans[0])
    pos = 0
    for i, (ci, co) in enumerate(zip(chans[:-1], chans[1:])):  # per layer: co biases, then ci*co weights (ci, co)
        bias = params[:, pos:pos + co].permute(0, 2, 3, 1).reshape(b, gh, gw, 1, co)
        weight = params[:, pos + co:pos + co + ci * co].permute(0, 2, 3, 1).reshape(b, gh, gw, ci, co)
        pos += co + ci * co
        out = out @ weight + bias
        out = torch.tanh(out) if i == len(chans) - 2 else F.leaky_relu(out, 0.01)
    assert pos == params.shape[1]
    return out.reshape(b, gh, gw, k, k, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, h, w)


def inputs(cfg: Cfg, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.crop // cfg.aspect, cfg.crop
    coarse = torch.randint(0, cfg.label_nc, (batch, h // 4, w // 4), generator=g)
    labels = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)   # regions, as label maps have
    labels = torch.where(torch.rand(labels.shape, generator=g) < 0.1,
                         torch.randint(0, cfg.label_nc, labels.shape, generator=g), labels)
    inst = torch.randint(0, 5, (batch, h // 8, w // 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    return labels, inst


def _save(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "latest_net_G.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


HR_SMALL = ["hr_width=8", "hr_depth=3"]
CASES = {
    # facades-like: reflection, no instance; default MLP 64 x 5 read without any option; S=8 = fixed 2 x learned 4
    "reflect": (Cfg(5, pad="reflect", crop=128, hr_width=64, hr_depth=5), []),
    # cityscapes-like: zero padding, instance edge to the low-res stream only, aspect 2; S=4, no fixed downsampling
    "zero-edge-lr": (Cfg(6, edge=True, lr_instance=True, crop=128, aspect=2),
                     HR_SMALL + ["label_nc=6", "aspect_ratio=2", "crop_size=128"]),
    # instance edge to both streams, replication padding, one strided conv (S=4 = fixed 2 x learned 2)
    "replicate-edge-both": (Cfg(4, edge=True, pad="replicate", learned_ds=2),
                            HR_SMALL + ["label_nc=4", "instance_edge=true", "replicate_pad=true"]),
    # lr_instance without an instance map: the official MLP loses the last label channel
    "zero-lr-instance-no-edge": (Cfg(5, lr_instance=True), HR_SMALL + ["label_nc=5"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_converted_model_computes_the_official_function(tmp_path: Path, case: str) -> None:
    cfg, options = CASES[case]
    state = official_state(cfg)
    path = _save(tmp_path, state)
    assert detect_format(state) == "asapnet"
    G = convert_checkpoint(path, options=options)
    assert G.model_type == "asapnet" and G.tile == cfg.tile and G.hr_channels == cfg.hr_channels
    assert (G.num_classes, G.instance_edge, G.lr_instance) == (cfg.label_nc, cfg.edge, cfg.lr_instance)
    assert G.num_params() == sum(v.numel() for v in state.values())
    labels, inst = inputs(cfg)
    ref = official_forward(cfg, state, labels, inst)
    with torch.no_grad():
        ours = G(labels, inst) if cfg.edge else G(labels)
    assert ours.shape == ref.shape == (2, 3, cfg.crop // cfg.aspect, cfg.crop)
    assert ref.std() > 0.05  # a non-trivial image, not a saturated or flat one
    assert (ours - ref).abs().max() < 1e-4
    out = G.translate(labels, instances=inst if cfg.edge else None)
    assert torch.allclose(out, ours, atol=1e-6)
    assert G.conversion["format"] == "asapnet" and G.conversion["entry"] == "<root>"


def test_reference_builder_matches_the_released_layouts() -> None:
    """The test's official Sequential reproduces the documented indices and parameter counts at full size."""
    for cfg, convs, blocks, head, params in (
            (Cfg(13, pad="reflect", crop=512, learned_ds=16, lr_width=64, lr_max=1024, lr_depth=7, hr_width=64,
                 hr_depth=5), [1, 4, 7, 10, 13], "conv_block.1", 22, 82_007_363),
            (Cfg(35, edge=True, lr_instance=True, crop=512, aspect=2, learned_ds=16, lr_width=64, lr_max=1024,
                 lr_depth=7, hr_width=64, hr_depth=5), [0, 2, 4, 6, 8], "conv_block.0", 17, 83_201_411)):
        with torch.device("meta"):
            state = {f"lowres_stream.model.{k}": v
                     for k, v in official_lowres(cfg, n_mlp_params(cfg.hr_channels)).state_dict().items()}
        assert [int(k.split(".")[2]) for k in state if k.endswith(".0.weight") and "conv_block" not in k] == convs
        assert {int(k.split(".")[2]) for k in state if blocks in k} == set(range(convs[-1] + 2, head))
        assert f"lowres_stream.model.{head}.bias" in state
        assert sum(v.numel() for v in state.values()) == params
        # the converter reads the full-size layout (on the meta device: no 330 MB of weights)
        dataset = "facades" if cfg.label_nc == 13 else "cityscapes"
        with torch.device("meta"):
            G, _ = convert(StateReader(state, "meta.pth", "asapnet"), Options({"dataset": dataset}, OPTIONS, "asapnet"))
        preset = get_preset(f"asapnet-{dataset}-{'512' if dataset == 'facades' else '256x512'}").components["G"][1]
        assert {k: G.config[k] for k in preset} == preset
        assert G.num_params() == params


def test_dataset_presets_and_cli(tmp_path: Path) -> None:
    facades = Cfg(13, pad="reflect", hr_width=64, hr_depth=5)
    path = _save(tmp_path, official_state(facades))
    res = CliRunner().invoke(cli, ["convert", str(path), "--from", "asapnet", "--option", "dataset=facades",
                                   "--out", str(tmp_path / "facades")])
    assert res.exit_code == 0, res.output
    assert "configuration read: 13 labels, no instance edge" in res.output
    G = leangen.load(tmp_path / "facades")
    assert G.config["reflection_pad"] and not G.config["instance_edge"]
    with pytest.raises(ConversionError, match=r"dataset=cityscapes \(sets reflection_pad=False\) contradicts"):
        convert_checkpoint(path, options=["dataset=cityscapes"])
    # cityscapes: 35 labels + edge, zero padding, aspect 2, crop 512 -> S = 16
    city = Cfg(35, edge=True, lr_instance=True, crop=512, aspect=2, hr_width=64, hr_depth=5)
    cstate = official_state(city)
    cpath = _save(tmp_path, cstate, "city.pth")
    G = convert_checkpoint(cpath, options={"dataset": "cityscapes"})
    assert (G.tile, G.hr_channels[0], G.img_height, G.img_width) == (16, 51, 256, 512)
    labels, inst = (t[:, :32, :64] for t in inputs(city, batch=1))  # any multiple of S runs; the native size is 256x512
    with torch.no_grad():
        assert (G(labels, inst) - official_forward(city, cstate, labels, inst)).abs().max() < 1e-4
    with pytest.raises(ConversionError, match=r"dataset=facades \(sets reflection_pad=True\) contradicts"):
        convert_checkpoint(cpath, options={"dataset": "facades"})


def test_refusals_are_one_conversion_error_naming_the_key(tmp_path: Path) -> None:
    cfg, options = CASES["zero-edge-lr"]
    state = official_state(cfg)

    def refused(st: dict[str, torch.Tensor], opts: list[str], pattern: str) -> None:
        with pytest.raises(ConversionError, match=pattern):
            convert_checkpoint(_save(tmp_path, st, "x.pth"), fmt="asapnet", options=opts)

    refused({k: v for k, v in state.items() if k != "lowres_stream.model.2.1.bias"}, options,
            r"'lowres_stream\.model\.2\.1\.bias' is missing")
    # a whole strided conv gone (stages at 0, 2, 4; blocks 6-7; head 8): named by its weight, not a later index
    refused({k: v for k, v in state.items() if not k.startswith("lowres_stream.model.4.")}, options,
            r"'lowres_stream\.model\.4\.0\.weight' is missing")
    refused({k: v for k, v in state.items() if not k.startswith("lowres_stream.model.8.")}, options,
            r"'lowres_stream\.model\.8\.weight' is missing")
    refused(dict(state, **{"highres_stream.xy_coords": torch.zeros(1)}), options,
            r"unexpected tensor 'highres_stream\.xy_coords'")
    refused(dict(state, **{"lowres_stream.model.2.1.weight": torch.ones(7)}), options,
            r"'lowres_stream\.model\.2\.1\.weight' has shape \[7\]")
    refused(state, options + ["reflection_pad=true"], r"reflection_pad=True contradicts .* reflection_pad=False")
    refused(state, HR_SMALL + ["label_nc=9"], r"label_nc=9 contradicts the checkpoint")
    refused(state, options + ["lr_instance=false"], r"lr_instance=False contradicts .* lr_instance=True")
    refused(state, options[:-1] + ["crop_size=256"], r"crop_size=256 \(aspect 2\) contradicts .* tile S=4")
    refused(state, options + ["lr_depth=7"], r"lr_depth=7 contradicts .* lr_depth=2")
    refused(state, ["hr_width=16", "hr_depth=3"], r"predicts \d+ MLP parameters.*hr_width")
    refused(state, ["dataset=coco"], r"unknown dataset 'coco'")
    refused(state, ["no_one_hot=true"], r"no option 'no_one_hot'")
    spectral = {k.replace("model.0.0.weight", "model.0.0.weight_orig"): v for k, v in state.items()}
    refused(spectral, options, r"'lowres_stream\.model\.0\.0\.weight_orig' is spectrally normalised")


def test_save_pretrained_round_trip_and_load(tmp_path: Path) -> None:
    cfg, options = CASES["zero-edge-lr"]
    path = _save(tmp_path, official_state(cfg, seed=3))
    out = convert_to_directory(path, tmp_path / "asap", options=options)
    meta = json.loads((out / "config.json").read_text())
    assert meta["converted_from"]["format"] == "asapnet" and meta["converted_from"]["options"]["label_nc"] == 6
    labels, inst = inputs(cfg)
    a = leangen.load(out).translate(labels, instances=inst)
    b = convert_checkpoint(path, options=options).translate(labels, instances=inst)
    assert torch.equal(a, b)
    # a DataParallel-saved generator (module. prefix) converts the same
    wrapped = _save(tmp_path, {f"module.{k}": v for k, v in official_state(cfg, seed=3).items()}, "dp.pth")
    assert torch.equal(convert_checkpoint(wrapped, options=options).translate(labels, instances=inst), a)
    # a checkpoint needing no option converts in memory through leangen.load
    rcfg = CASES["reflect"][0]
    rpath = _save(tmp_path, official_state(rcfg), "facades_like.pth")
    labels = inputs(rcfg)[0]
    assert torch.allclose(leangen.load(rpath).translate(labels), official_forward(rcfg, official_state(rcfg), labels),
                          atol=1e-4)
