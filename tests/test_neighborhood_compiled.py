"""Flex neighborhood attention compiled per shape (issue 17): StyleNAT-256's many attention shapes never share one
recompile budget, never drop to eager flex, and the compiled path computes what the reference computes."""
from __future__ import annotations

import collections
import warnings

import pytest
import torch
from torch.utils._pytree import tree_map

import leangen.ops.neighborhood as na
from leangen.ops import neighborhood_flex as nf
from leangen.registry import get_preset


def stylenat_attention_shapes(preset: str) -> set[tuple]:
    """``(q.shape, kernel, dilation)`` of every neighborhood-attention call of ``preset``'s generator (meta device)."""
    shapes: set[tuple] = set()
    real = na.neighborhood_attention2d

    def record(q, k, v, kernel_size, dilation=1, rpb=None, scale=None, backend="auto"):
        shapes.add((tuple(q.shape), na.pair(kernel_size), na.pair(dilation)))
        return real(q, k, v, kernel_size, dilation, rpb, scale, backend)

    p = get_preset(preset)
    with pytest.MonkeyPatch.context() as mp, torch.device("meta"), torch.no_grad():
        mp.setattr(na, "neighborhood_attention2d", record)
        G = p.build(p.main_component).eval()
        G(torch.randn(1, G.z_dim))
    return shapes


def shape_only_backend(gm, example_inputs):
    """A dynamo backend that traces like any other but returns zeros of the traced output shapes (no N^2 work)."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    result = tree_map(lambda n: torch.zeros(n.meta["example_value"].shape, dtype=n.meta["example_value"].dtype)
                      if isinstance(n, torch.fx.Node) else n, out.args[0])
    return lambda *args: result


def dense_layout_block_mask(h, w, kernel, dil, device):
    """A valid ``BlockMask`` of the right size without materializing the N x N mask (every block kept)."""
    from torch.nn.attention.flex_attention import BlockMask

    n = h * w
    nb = (n + 127) // 128
    kv_num = torch.full((1, 1, nb), nb, dtype=torch.int32)
    kv_idx = torch.arange(nb, dtype=torch.int32).expand(1, 1, nb, nb).contiguous()
    return BlockMask.from_kv_blocks(kv_num, kv_idx, seq_lengths=(n, n))


def test_stylenat_256_shapes_compile_once_each_without_hitting_the_recompile_limit(monkeypatch):
    shapes = stylenat_attention_shapes("stylenat-256")
    limit = torch._dynamo.config.recompile_limit
    assert len(shapes) > limit  # the situation of the first GPU run: one shared budget cannot hold them
    monkeypatch.setattr(nf, "COMPILE_ON_CPU", True)
    monkeypatch.setattr(nf, "COMPILE_BACKEND", shape_only_backend)
    monkeypatch.setattr(nf, "_block_mask", dense_layout_block_mask)
    torch._dynamo.reset()
    before = nf.compiled_shapes()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to tiled (or eager flex) would warn
        for shape, kernel, dil in sorted(shapes):
            heads, dim = shape[1], shape[-1]
            q = torch.zeros(shape)
            rpb = torch.zeros(heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1)
            out = na.neighborhood_attention2d(q, q, q, kernel, dil, rpb, backend="flex")
            assert out.shape == shape
            # a second call of the same shape reuses its kernel
            na.neighborhood_attention2d(q, q, q, kernel, dil, rpb, backend="flex")
    assert nf.compiled_shapes() - before == len(shapes)


def test_compiled_flex_equals_the_reference_on_many_shapes(monkeypatch):
    """More shapes than the recompile limit, through the compiled path (dynamo, eager backend), equal the definition."""
    monkeypatch.setattr(nf, "COMPILE_ON_CPU", True)
    monkeypatch.setattr(nf, "COMPILE_BACKEND", "eager")
    gen = torch.Generator().manual_seed(0)
    cases = [(s, k, d) for s in (9, 12, 15, 16) for k, d in ((3, 1), (3, 2), (5, 1))]
    assert len(cases) > torch._dynamo.config.recompile_limit
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), warnings.catch_warnings():
        warnings.simplefilter("error")
        for side, k, d in cases:
            q, kk, v = (torch.randn(2, 2, side, side, 8, generator=gen) for _ in range(3))
            rpb = torch.randn(2, 2 * k - 1, 2 * k - 1, generator=gen)
            want = na.neighborhood_attention2d(q, kk, v, k, d, rpb, backend="reference")
            got = na.neighborhood_attention2d(q, kk, v, k, d, rpb, backend="flex")
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_large_uncompiled_flex_falls_back_to_tiled_and_says_so():
    """Eager flex would materialize N^2 scores: above the size limit the call runs ``tiled`` with a warning."""
    side = 80  # 6400 tokens > EAGER_MAX_TOKENS
    assert side * side > nf.EAGER_MAX_TOKENS
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, side, side, 4, generator=gen) for _ in range(3))
    na._warn_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="using the tiled backend"):
        got = na.neighborhood_attention2d(q, k, v, 3, 1, None, backend="flex")
    torch.testing.assert_close(got, na.neighborhood_attention2d(q, k, v, 3, 1, None, backend="tiled"))


def test_profile_counts_and_reports_the_backend_it_times():
    from leangen.profile import profile_models

    row = profile_models(["stylenat-tiny32"], device="cpu", warmup=0, repeats=1)[0]
    assert row["na_backend"] == "tiled" and row["macs_na_backend"] == "tiled"
    assert row["execution"]["device"] == "cpu" and row["execution"]["precision"] == "fp32"


def test_na_backend_is_chosen_once_per_model_on_the_verbs(tmp_path):
    """``--na-backend`` sets the backend of the model a verb loads or builds (and its config); models without
    attention refuse it in one line."""
    import json

    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from leangen.cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["profile", "stylenat-tiny32", "--na-backend", "gather", "--device", "cpu", "--json",
                              "--warmup", "0", "--repeats", "1", "-q"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output[res.output.index("["):])[0]
    assert row["na_backend"] == "gather" and row["execution"]["na_backend"] == "gather"
    import leangen

    leangen.load("stylenat-tiny32").save_pretrained(tmp_path / "nat")
    images = {}
    for backend in ("reference", "tiled"):
        res = runner.invoke(cli, ["generate", "--network", str(tmp_path / "nat"), "--seeds", "0", "--device", "cpu",
                                  "--na-backend", backend, "--outdir", str(tmp_path / backend)])
        assert res.exit_code == 0, res.output
        images[backend] = np.asarray(Image.open(tmp_path / backend / "seed0000.png"), dtype=np.int16)
    assert np.abs(images["reference"] - images["tiled"]).max() <= 1
    res = runner.invoke(cli, ["generate", "--network", "stylegan2-tiny32", "--seeds", "0", "--device", "cpu",
                              "--na-backend", "tiled", "--outdir", str(tmp_path / "sg2")])
    assert res.exit_code == 1 and "neighborhood attention" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["train", "--preset", "stylenat-tiny32", "--data", "openmoji-32-n64", "--na-backend",
                              "gather", "--dry-run"])
    assert res.exit_code == 0 and json.loads(res.output)["overrides"]["G"]["na_backend"] == "gather"


def test_counting_as_tiled_gives_every_layer_its_own_backend_back():
    """The profiler counts flex layers as tiled; afterwards each layer has exactly the backend it had (a layer the
    user set to tiled stays tiled, a flex one goes back to flex)."""
    from leangen.ops.neighborhood import counted_as_tiled

    G = get_preset("stylenat-tiny32").build("G")
    layers = [m for m in G.modules() if isinstance(m, na.HydraNeighborhoodAttention2d)]
    assert len(layers) >= 2
    for i, m in enumerate(layers):
        m.backend = "flex" if i % 2 else "tiled"
    before = [m.backend for m in layers]
    with counted_as_tiled(G) as counted:
        assert counted == ["tiled"] and all(m.backend == "tiled" for m in layers)
    assert [m.backend for m in layers] == before
