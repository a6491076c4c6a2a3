"""StyleNAT official checkpoints: state dicts built by key name (current and legacy split-head layouts) convert to
``StyleNATGenerator``s that match an independent dense reference of the official inference path, written here from
the format description (reference notes, ``official_checkpoints.md``); refusals name the key; save/load round trip."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.convert import ConversionError, convert_checkpoint, convert_to_directory, detect_format
from leangen.models.stylenat import StyleNATGenerator

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
SD, N_MLP = 16, 2
# Level specs: (channels, [(heads, kernel, dilation) per table of the *current* layout]); level 0 is full attention.
# 16x16: every kind of layer (4x4 MHSA, one-group 8x8, two Hydra groups with different kernels and d = 2).
SPEC16 = [(32, None), (32, [(4, 7, 1)]), (16, [(2, 5, 1), (2, 7, 2)])]
# 32x32: d = 4, widths 8 (the smallest the official sinusoidal code allows: C/4 - 1 >= 1).
SPEC32 = [(16, None), (16, [(4, 7, 1)]), (16, [(2, 7, 1), (2, 7, 2)]), (8, [(2, 7, 1), (2, 7, 4)])]


def _kernel() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * 4


def _index(n: int) -> torch.Tensor:
    """Level-0 relative_position_index: [query, key] -> flat (key - query + n - 1) position in a (2n-1)^2 table."""
    out = torch.empty(n * n, n * n, dtype=torch.int64)
    for qi in range(n * n):
        for ki in range(n * n):
            out[qi, ki] = (ki // n - qi // n + n - 1) * (2 * n - 1) + (ki % n - qi % n + n - 1)
    return out


def official_state(spec: list, legacy: bool = False, seed: int = 0, style_dim: int = SD, n_mlp: int = N_MLP,
                   shapes_only: bool = False) -> dict[str, torch.Tensor]:
    """Random weights in the official StyleNAT key scheme. ``legacy``: bias tables as ``rpb0``/``rpb1`` halves (a
    one-group level's table split into two half-head tables). The same seed gives the same weights in both.
    ``shapes_only``: zero tensors without storage where possible (full-size layouts)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        if shapes_only:
            return torch.zeros(()).expand(*shape)
        return torch.randn(*shape, generator=g) * scale

    s: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        s[f"style.{i}.weight"] = r(style_dim, style_dim) / 0.01  # stored as randn / lr_mul
        s[f"style.{i}.bias"] = r(style_dim, scale=0.1)
    s["input.input"] = r(1, spec[0][0], 4, 4)
    n = len(spec)
    for i, (c, groups) in enumerate(spec):
        for j in range(2):
            p = f"layers.{i}.blocks.{j}"
            for norm in ("norm1", "norm2"):
                s[f"{p}.{norm}.style.weight"] = r(2 * c, style_dim)
                s[f"{p}.{norm}.style.bias"] = torch.cat([1 + r(c, scale=0.2), r(c, scale=0.2)])
            s[f"{p}.attn.qkv.weight"] = r(3 * c, c, scale=0.25)
            s[f"{p}.attn.qkv.bias"] = r(3 * c, scale=0.1)
            s[f"{p}.attn.proj.weight"] = r(c, c, scale=0.2)
            s[f"{p}.attn.proj.bias"] = r(c, scale=0.1)
            s[f"{p}.mlp.fc1.weight"] = r(4 * c, c, scale=0.2)
            s[f"{p}.mlp.fc1.bias"] = r(4 * c, scale=0.1)
            s[f"{p}.mlp.fc2.weight"] = r(c, 4 * c, scale=0.1)
            s[f"{p}.mlp.fc2.bias"] = r(c, scale=0.1)
            if groups is None:
                s[f"{p}.attn.rpb"] = r(max(c // 32, 4), 7, 7, scale=0.5)
                s[f"{p}.attn.relative_position_index"] = _index(4)
                continue
            tables = [r(h, 2 * k - 1, 2 * k - 1, scale=0.5) for h, k, _ in groups]
            if legacy and len(tables) == 1:
                tables = list(tables[0].chunk(2))
            for t_i, t in enumerate(tables):
                s[f"{p}.attn.rpb{t_i}" if legacy else f"{p}.attn.rpb.{t_i}"] = t
        if i < n - 1:
            u, c2 = f"layers.{i}.upsample", spec[i + 1][0]
            s[f"{u}.alpha"] = r(1, scale=0.5)
            s[f"{u}.norm.weight"] = 1 + r(c, scale=0.1)
            s[f"{u}.norm.bias"] = r(c, scale=0.1)
            s[f"{u}.reduction.weight"] = r(c2, c, scale=c ** -0.5)
            s[f"{u}.sin_pos_embed._float_tensor"] = torch.zeros(1)
        cin = spec[i + 1][0] if i < n - 1 else c
        s[f"to_rgbs.{i}.conv.weight"] = r(3, cin, 1, 1, scale=0.3)
        s[f"to_rgbs.{i}.conv.bias"] = r(3, scale=0.1)
        s[f"to_rgbs.{i}.bias"] = r(1, 3, 1, 1, scale=0.1)
        if i < n - 1:
            s[f"to_rgbs.{i}.upsample.kernel"] = _kernel()
    return s


# ----------------------------------------------------------------------------------------------------------------------
# Independent reference of the official inference path (dense masked attention)

def _na_axis(length: int, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis [query, key]: in-window mask (same dilation group, within r of the clamped centre) and bias index."""
    r = k // 2
    i = torch.arange(length)
    grp, p = i % d, i // d
    group_len = (length - grp + d - 1) // d
    centre = torch.minimum(torch.maximum(p, torch.full_like(p, r)), group_len - 1 - r)
    mask = (i[None, :] % d == grp[:, None]) & ((i[None, :] // d - centre[:, None]).abs() <= r)
    return mask, i[None, :] // d - p[:, None] + k - 1


def _dense_bias(table: torch.Tensor, size: int, k: int, d: int) -> torch.Tensor:
    """``[heads, N, N]`` logits bias of dilated NA on a size x size map, -inf outside each query's window."""
    mask, idx = _na_axis(size, k, d)
    idx = idx.clamp(0, 2 * k - 2)
    bias = table[:, idx[:, None, :, None], idx[None, :, None, :]]  # [heads, qy, qx, ky, kx]
    bias = bias.masked_fill(~(mask[:, None, :, None] & mask[None, :, None, :]), float("-inf"))
    return bias.reshape(table.shape[0], size * size, size * size)


def _position_grid(h: int, w: int, c: int) -> torch.Tensor:
    """``[C, H, W]``: columns in channels [0, C/2), rows in [C/2, C); sin then cos; 1-based positions."""
    q = c // 4
    freq = [math.exp(-j * math.log(10000) / (q - 1)) for j in range(q)]
    grid = torch.zeros(c, h, w, dtype=torch.float64)
    for ch in range(c):
        half, rest = divmod(ch, c // 2)
        fn, j = (torch.sin, rest) if rest < q else (torch.cos, rest - q)
        pos = torch.arange(1, (w if half == 0 else h) + 1, dtype=torch.float64)
        vals = fn(pos * freq[j])
        grid[ch] = vals[None, :] if half == 0 else vals[:, None]
    return grid


def _fir_up(x: torch.Tensor) -> torch.Tensor:
    """upfirdn2d(x, outer([1,3,3,1]) / 64 * 4, up=2, pad=(2, 1)): zero insertion, pad, 4x4 correlation."""
    b, c, h, w = x.shape
    z = x.new_zeros(b * c, 1, 2 * h, 2 * w)
    z[:, 0, ::2, ::2] = x.reshape(b * c, h, w)
    return F.conv2d(F.pad(z, (2, 1, 2, 1)), _kernel().to(x)[None, None]).reshape(b, c, 2 * h, 2 * w)


def reference_forward(s: dict[str, torch.Tensor], z: torch.Tensor, dilations: list[list[int]],
                      unnormalize: bool = True) -> torch.Tensor:
    """The official inference path on an official-format state dict (truncation and mixing ignored, as there).
    ``dilations``: per level, one entry per bias table in ``s`` (legacy halves listed separately)."""
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in s:
        wt = s[f"style.{i}.weight"]
        x = F.leaky_relu(F.linear(x, wt * 0.01 / math.sqrt(wt.shape[1]), s[f"style.{i}.bias"] * 0.01), 0.2) * 2 ** 0.5
        i += 1
    w, b = x, z.shape[0]
    feat = s["input.input"].expand(b, -1, -1, -1)  # [B, C, H, W]
    n = len(dilations)
    skip = None
    for i in range(n):
        size = 4 * 2 ** i
        for j in range(2):
            p = f"layers.{i}.blocks.{j}"
            c = feat.shape[1]
            tok = feat.flatten(2).transpose(1, 2)  # [B, N, C], row-major

            def adain(t: torch.Tensor, norm: str) -> torch.Tensor:
                wt = s[f"{p}.{norm}.style.weight"]
                st = F.linear(w, wt / math.sqrt(wt.shape[1]), s[f"{p}.{norm}.style.bias"])
                normed = F.instance_norm(t.transpose(1, 2), eps=1e-5).transpose(1, 2)
                return st[:, None, :c] * normed + st[:, None, c:]

            h = adain(tok, "norm1")
            if i == 0:
                table = s[f"{p}.attn.rpb"]
                bias = table.reshape(table.shape[0], -1)[:, s[f"{p}.attn.relative_position_index"]]
            else:
                keys = sorted(k for k in s if k.startswith(f"{p}.attn.rpb"))
                bias = torch.cat([_dense_bias(s[k], size, (s[k].shape[-1] + 1) // 2, d)
                                  for k, d in zip(keys, dilations[i])])
            heads = bias.shape[0]
            qkv = F.linear(h, s[f"{p}.attn.qkv.weight"], s[f"{p}.attn.qkv.bias"])
            q, k, v = qkv.reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            attn = torch.softmax((q * (c // heads) ** -0.5) @ k.transpose(-1, -2) + bias, dim=-1)
            out = (attn @ v).transpose(1, 2).reshape(b, -1, c)
            tok = tok + F.linear(out, s[f"{p}.attn.proj.weight"], s[f"{p}.attn.proj.bias"])
            h = F.gelu(F.linear(adain(tok, "norm2"), s[f"{p}.mlp.fc1.weight"], s[f"{p}.mlp.fc1.bias"]))
            tok = tok + F.linear(h, s[f"{p}.mlp.fc2.weight"], s[f"{p}.mlp.fc2.bias"])
            feat = tok.transpose(1, 2).reshape(b, c, size, size)
        if i < n - 1:
            u = f"layers.{i}.upsample"
            up = F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
            up = F.layer_norm(up, (up.shape[-1],), s[f"{u}.norm.weight"], s[f"{u}.norm.bias"], eps=1e-5)
            up = F.linear(up, s[f"{u}.reduction.weight"]).permute(0, 3, 1, 2)
            feat = up + s[f"{u}.alpha"] * _position_grid(2 * size, 2 * size, up.shape[1]).to(up)
        rgb = F.conv2d(feat, s[f"to_rgbs.{i}.conv.weight"], s[f"to_rgbs.{i}.conv.bias"]) + s[f"to_rgbs.{i}.bias"]
        if skip is not None:
            rgb = rgb + (_fir_up(skip) if i < n - 1 else skip)
        skip = rgb
    assert skip is not None
    if not unnormalize:
        return skip
    return 2 * (skip * STD.to(skip)[:, None, None] + MEAN.to(skip)[:, None, None]) - 1


def _dilations(spec: list, legacy: bool) -> list[list[int]]:
    out = [[1]]
    for _, groups in spec[1:]:
        ds = [d for _, _, d in groups]
        out.append(ds * 2 if legacy and len(ds) == 1 else ds)
    return out


def _save(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "ckpt.pt") -> Path:
    path = tmp_path / name
    torch.save({"g": state, "g_ema": state, "args": {"size": 0}}, path)
    return path


def _official_params(state: dict[str, torch.Tensor]) -> int:
    buffers = ("relative_position_index", "sin_pos_embed._float_tensor", "upsample.kernel")
    return sum(t.numel() for k, t in state.items() if not k.endswith(buffers))


# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True])
def test_converted_model_computes_the_official_function(tmp_path: Path, legacy: bool) -> None:
    torch.manual_seed(0)
    state = official_state(SPEC16, legacy=legacy)
    path = _save(tmp_path, state)
    assert detect_format(state) == "stylenat"
    G = convert_checkpoint(path, w_avg_samples=256)
    assert isinstance(G, StyleNATGenerator) and G.rgb_after_upsample and G.img_resolution == 16
    assert G.heads == [4, 4, 4] and G.config["kernels"][1:] == [[7], [5, 7]]
    assert G.config["dilations"][1:] == [[1], [1, 2]]
    assert G.num_params() == _official_params(state)
    z = torch.randn(3, SD)
    with torch.no_grad():
        ref = reference_forward(state, z, _dilations(SPEC16, legacy))
        assert ref.std() > 0.2 and ref.isfinite().all()  # a non-trivial image
        torch.testing.assert_close(G(z), ref, rtol=1e-4, atol=1e-4)  # default path: truncation 1, no mixing
        torch.testing.assert_close(G.synthesis(G.map(z)), ref, rtol=1e-4, atol=1e-4)
        for backend in ("reference", "gather"):
            G.set_na_backend(backend)  # type: ignore[arg-type]
            torch.testing.assert_close(G(z), ref, rtol=1e-4, atol=1e-4)
        raw = convert_checkpoint(path, "stylenat", {"imagenet_normalized": False}, w_avg_samples=16)
        torch.testing.assert_close(raw(z), reference_forward(state, z, _dilations(SPEC16, legacy), False),
                                   rtol=1e-4, atol=1e-4)
        # float64 end to end: what remains is leangen's float32 position code (the official one is float32 too)
        # and the float32 folding of the normalization into the ToRGBs
        s64 = {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}
        torch.testing.assert_close(G.double()(z.double()), reference_forward(s64, z.double(),
                                   _dilations(SPEC16, legacy)), rtol=0, atol=1e-5)
    changes = " ".join(G.conversion["changes"])
    assert "ImageNet" in changes and ("legacy" in changes) == legacy


def test_legacy_and_current_layouts_convert_to_identical_models(tmp_path: Path) -> None:
    a = convert_checkpoint(_save(tmp_path, official_state(SPEC32), "a.pt"), "stylenat", w_avg_samples=16)
    legacy_state = official_state(SPEC32, legacy=True)
    assert "layers.1.blocks.0.attn.rpb1" in legacy_state and "layers.1.blocks.0.attn.rpb.0" not in legacy_state
    b = convert_checkpoint(_save(tmp_path, legacy_state, "b.pt"), "stylenat", w_avg_samples=16)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.config == b.config and a.config["dilations"] == [[1], [1], [1, 2], [1, 4]]
    assert b.num_params() == _official_params(legacy_state)
    z = torch.randn(2, SD)
    with torch.no_grad():
        torch.testing.assert_close(b(z), reference_forward(legacy_state, z, _dilations(SPEC32, True)),
                                   rtol=1e-4, atol=1e-4)
        # dilations are not stored: the option overrides the official configs' R/8
        c = convert_checkpoint(tmp_path / "b.pt", "stylenat", ["dilations=1;1;1,2;1,2"], w_avg_samples=16)
        assert c.config["dilations"][-1] == [1, 2] and "(option)" in " ".join(c.conversion["changes"])
        ref = reference_forward(legacy_state, z, [[1], [1, 1], [1, 2], [1, 2]])
        torch.testing.assert_close(c(z), ref, rtol=1e-4, atol=1e-4)


def test_released_ffhq256_legacy_layout_reads_the_official_configuration() -> None:
    """Full-size FFHQ-256 shapes in the released legacy layout (no file, no w_avg: the converter function itself)."""
    from leangen.convert import formats
    from leangen.convert.common import Options, StateReader

    spec = [(512, None), (512, [(16, 7, 1)])] + [(512, [(8, 7, 1), (8, 7, d)]) for d in (2, 4, 8)] \
        + [(256, [(4, 7, 1), (4, 7, 16)]), (128, [(2, 7, 1), (2, 7, 32)])]
    state = official_state(spec, legacy=True, style_dim=512, n_mlp=8, shapes_only=True)
    fmt = formats()["stylenat"]
    G, _ = fmt.convert(StateReader(state, "FFHQ256_940k_flip.pt", "stylenat"), Options({}, fmt.options, "stylenat"))
    assert G.heads == [16, 16, 16, 16, 16, 8, 4] and G.num_ws == 14
    assert G.config["dilations"] == [[1], [1], [1, 2], [1, 4], [1, 8], [1, 16], [1, 32]]
    assert G.num_params() == _official_params(state) == 48_921_000  # the reference notes' 48.921 M
    with torch.device("meta"):  # the leangen FFHQ configuration with the official ToRGB placement is the same model
        own = StyleNATGenerator(256, rgb_after_upsample=True)
        big = StyleNATGenerator(1024, rgb_after_upsample=True)
    assert {k: v.shape for k, v in own.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    assert big.num_params() == 49_452_934  # the reference notes' 49.453 M


def _refusal(tmp_path: Path, state: dict[str, torch.Tensor], match: str, **kw) -> None:
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(_save(tmp_path, state, "bad.pt"), "stylenat", w_avg_samples=16, **kw)


def test_refusals_name_the_key(tmp_path: Path) -> None:
    base = official_state(SPEC16)
    s = dict(base)
    del s["layers.1.blocks.1.mlp.fc2.bias"]
    _refusal(tmp_path, s, r"'layers\.1\.blocks\.1\.mlp\.fc2\.bias' is missing")
    s = dict(base, **{"layers.0.blocks.0.attn.extra": torch.zeros(2)})
    _refusal(tmp_path, s, r"unexpected tensor 'layers\.0\.blocks\.0\.attn\.extra'")
    s = dict(base, **{"layers.1.upsample.reduction.weight": torch.zeros(8, 32)})
    _refusal(tmp_path, s, r"'layers\.1\.upsample\.reduction\.weight' has shape \[8, 32\]")
    s = dict(base, **{"layers.2.blocks.1.attn.rpb.1": torch.zeros(2, 9, 9)})
    _refusal(tmp_path, s, r"'layers\.2\.blocks\.1\.attn\.rpb\.1' has shape \[2, 9, 9\]")
    s = dict(base, **{"layers.0.blocks.1.attn.relative_position_index": _index(4).t().contiguous()})
    _refusal(tmp_path, s, r"constant 'layers\.0\.blocks\.1\.attn\.relative_position_index' differs")
    s = dict(base)
    s["to_rgbs.0.upsample.kernel"] = s["to_rgbs.0.upsample.kernel"] * 2
    _refusal(tmp_path, s, r"constant 'to_rgbs\.0\.upsample\.kernel' differs")
    _refusal(tmp_path, base, r"dilations option has 2 levels", options={"dilations": "1;1"})
    _refusal(tmp_path, base, r"layers\.2\.blocks\.0\.attn has 2 head groups", options={"dilations": "1;1;1"})
    _refusal(tmp_path, base, r"exceeds the input height 16", options={"dilations": "1;1;1,4"})
    _refusal(tmp_path, base, r"no option 'size'", options={"size": 16})


def test_save_pretrained_round_trip_cli_and_load(tmp_path: Path) -> None:
    path = _save(tmp_path, official_state(SPEC16, legacy=True), "FFHQ_tiny.pt")
    out = convert_to_directory(path, tmp_path / "conv", w_avg_samples=64)
    G = leangen.load(out)
    H = leangen.load(path)  # a checkpoint file is converted on the fly
    assert isinstance(G, StyleNATGenerator) and isinstance(H, StyleNATGenerator)
    torch.testing.assert_close(G.mapping.w_avg, convert_checkpoint(path, w_avg_samples=64).mapping.w_avg)
    z = torch.randn(2, SD)
    with torch.no_grad():
        torch.testing.assert_close(G(z), H(z), rtol=0, atol=1e-6)
    imgs = G.generate([0, 1], truncation=0.7, output_type="pt")  # truncation stays available
    assert imgs.shape == (2, 3, 16, 16)
    r = CliRunner().invoke(cli, ["convert", str(path), "--from", "stylenat", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli" / "model.safetensors").is_file()
