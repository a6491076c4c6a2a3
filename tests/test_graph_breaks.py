"""Every family's inference forward traces as one graph (zero dynamo graph breaks), the fast paths included, so
``--compile compile|cudagraphs`` captures whole models. Tiny presets; dynamo traces with the ``eager`` backend (no
inductor code generation), so this stays a CPU test of seconds per model."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import torch._dynamo

from leangen.ops.modulated import set_modconv_impl
from leangen.registry import get_preset


def graph_breaks(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, list[str]]:
    """``(graph break count, their reasons)`` of tracing ``fn(*args, **kwargs)`` under no_grad."""
    torch._dynamo.reset()
    with torch.no_grad():
        info = torch._dynamo.explain(fn)(*args, **kwargs)
    return info.graph_break_count, [str(b.reason) for b in info.break_reasons]


def build(preset: str) -> torch.nn.Module:
    p = get_preset(preset)
    return p.build(p.main_component).eval()


GENERATORS = ["stylegan2-tiny32", "pixelfolder-tiny32", "cips-tiny32", "stylenat-tiny32"]
TRANSLATORS = ["asapnet-tiny32", "pix2pixhd-tiny32", "spade-tiny32", "resnet-tiny32", "unet-tiny32"]


@pytest.mark.parametrize("impl", ["auto", "scaled", "grouped"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("preset", GENERATORS)
def test_generators_trace_without_breaks(preset: str, batch: int, impl: str) -> None:
    if impl != "auto" and preset.startswith(("cips", "stylenat")):
        pytest.skip("CIPS runs its 1x1 layers as GEMMs; StyleNAT has no modulated 3x3 path choice to make")
    G = build(preset)
    if preset.startswith("stylenat"):
        from leangen.ops.neighborhood import set_backends

        set_backends(G, "tiled")  # the CPU backend (flex is compiled per shape on CUDA by itself)
    set_modconv_impl(G, impl)  # type: ignore[arg-type]
    z = G.example_inputs(batch)[0]
    count, reasons = graph_breaks(lambda z: G(z, noise_mode="const"), z)
    assert count == 0, reasons


@pytest.mark.parametrize("preset", TRANSLATORS)
def test_translators_trace_without_breaks(preset: str) -> None:
    G = build(preset)
    args = G.example_inputs(1)
    count, reasons = graph_breaks(G, *args)
    assert count == 0, reasons


def test_asapnet_lookup_and_reference_paths_trace_without_breaks() -> None:
    G = build("asapnet-tiny32")
    (labels,) = G.example_inputs(2)
    for lookup in (True, False):
        G.mlp_lookup = lookup
        count, reasons = graph_breaks(G, labels)
        assert count == 0, (lookup, reasons)


@pytest.mark.parametrize("preset", ["spn-tiny-32", "ar-tiny-32", "spn-tiny-32-logistic"])
def test_one_sampling_step_traces_without_breaks(preset: str) -> None:
    """SPN / AR: the fixed-shape step of ``StaticSampler`` (one pixel, every channel) is one graph, so CUDA graphs
    or ``torch.compile`` capture it once for every pixel."""
    from leangen.ops.masked_static import StaticSampler

    m = get_preset(preset).build("model", resolution=8).eval()
    spn = hasattr(m, "condition")
    r = 8 // m.subscale if spn else 8
    s = StaticSampler(m.decoder, 2, r, r, with_cond=spn)
    s._reset(torch.rand(2, r, r, m.decoder.channels, dtype=torch.float64),
             torch.randn(2, m.decoder.blocks[0].cond.in_channels, r, r) if spn else None)
    count, reasons = graph_breaks(s.step)
    assert count == 0, reasons


def test_a_graph_break_is_counted() -> None:
    """The counter above is not vacuous: a host sync inside a forward breaks the graph and is reported."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        if y.sum().item() > 0:  # data-dependent Python control flow
            return y + 1
        return y - 1

    count, _ = graph_breaks(forward, torch.ones(3))
    assert count >= 1


def test_profile_compile_times_the_compiled_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """``leangen profile --compile compile`` compiles each model's image-producing pass (a generator's synthesis, a
    translator's forward) and says so in its rows. The compiler backend is swapped for a counting eager one: the
    wiring is under test here, not inductor's code generation (minutes on a loaded CPU)."""
    import json

    from click.testing import CliRunner

    import leangen.execution.compile as ec
    from leangen.cli.main import cli

    traced: list[str] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Callable[..., Any]:
        traced.append(gm.code)
        return gm.forward

    monkeypatch.setitem(ec._COMPILE_KWARGS, "compile", {"backend": counting_backend})
    torch._dynamo.reset()
    res = CliRunner().invoke(cli, ["profile", "stylegan2-tiny32", "asapnet-tiny32", "--device", "cpu", "--compile",
                                   "compile", "--json", "--warmup", "1", "--repeats", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == ["stylegan2-tiny32", "asapnet-tiny32"]
    assert all(r["execution"]["compile"] == "compile" and r["latency_ms"] > 0 for r in rows)
    assert len(traced) >= 2  # one graph per model at least (both were compiled, not run eagerly)
