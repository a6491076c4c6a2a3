"""Efficiency metrics and the ``models`` / ``profile`` / ``generate`` verbs (fast: tiny presets and the meta device)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from leangen.cli.main import cli
from leangen.profile import ROW_KEYS, count_macs, count_macs_detailed, count_params, example_inputs

CONTRACT_KEYS = {"name", "family", "resolution", "params", "gmacs", "peak_mem_mb", "latency_ms", "throughput",
                 "device", "batch", "dtype", "latency_ms_p90", "threads", "torch_version"}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------------------------------------------------
# counting


def test_count_macs_linear_and_conv_are_analytic():
    lin = nn.Linear(7, 5)
    assert count_macs(lin, torch.randn(3, 7)) == 3 * 7 * 5
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, torch.randn(2, 3, 10, 10)) == 2 * 8 * 3 * 9 * 10 * 10
    depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)  # blur-like: counted as a (depthwise) conv
    assert count_macs(depthwise, torch.randn(1, 6, 4, 4)) == 6 * 9 * 4 * 4
    assert count_params(conv) == 8 * 3 * 9 + 8


def test_transposed_conv_conventions():
    up = nn.ConvTranspose2d(4, 2, 3, stride=2, bias=False)
    x = torch.randn(1, 4, 5, 5)
    executed = count_macs(up, x)
    assert executed == 4 * 2 * 9 * 5 * 5  # what runs: every input pixel times the kernel
    assert count_macs(up, x, convention="output_resolution") == 4 * executed  # booked at output resolution


def test_count_macs_works_on_meta_and_reports_ignored_ops():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to("meta")
    c = count_macs_detailed(model, torch.empty(5, 4, device="meta"), track_memory=True)
    assert c.macs == 5 * (4 * 8 + 8 * 2)
    assert "aten.relu" in c.uncounted_ops
    assert c.peak_bytes and c.peak_bytes >= 5 * 8 * 4


def _meta_generator(name: str):
    from leangen.registry import get_preset

    with torch.device("meta"):
        G = get_preset(name).build("G").eval()
    args, kwargs = example_inputs(G, 1, "meta")
    return G, args, kwargs


def test_stylegan2_256_gmacs_both_conventions():
    G, args, kwargs = _meta_generator("stylegan2-256")
    executed = count_macs(G, args, kwargs) / 1e9
    out_res = count_macs(G, args, kwargs, convention="output_resolution") / 1e9
    assert round(executed, 2) == 45.38  # as docs/families.md states (anchor: 45.4 G executed incl. 0.25 G of blur)
    assert round(out_res, 2) == 83.74  # as stated beside PixelFolder Table 1's 83.77


# ----------------------------------------------------------------------------------------------------------------------
# leangen models / profile


def test_models_json_lists_presets_with_params():
    res = invoke("models", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    sg = rows["stylegan2-256"]
    assert sg["params"] == 30_034_338
    assert sg["family"] == "stylegan2" and sg["task"] == "unconditional" and sg["resolution"] == 256
    assert sg["paper"]["gmacs"] == pytest.approx(83.77)
    table = invoke("models", "--family", "stylegan2")
    assert table.exit_code == 0 and "30,034,338" in table.stdout


def test_profile_json_row_contract():
    res = invoke("profile", "stylegan2-tiny32", "--json", "--device", "cpu", "--warmup", "1", "--repeats", "2")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert CONTRACT_KEYS <= set(row) and set(ROW_KEYS) <= set(row)
    for k in ("params", "gmacs", "peak_mem_mb", "latency_ms", "latency_ms_p90", "throughput"):
        assert row[k] > 0, k
    assert row["name"] == "stylegan2-tiny32" and row["device"] == "cpu" and row["batch"] == 1
    assert row["dtype"] == "fp32" and row["skipped"] is None


def test_profile_two_models_interleaved(tmp_path):
    from leangen.registry import get_preset

    # one preset and one saved model given as a path: both kinds of argument in one call
    saved = get_preset("stylegan2-tiny32").build("G").save_pretrained(tmp_path / "g")
    res = invoke("profile", "pixelfolder-tiny32", str(saved), "--json", "--device", "cpu", "--batch", "2",
                 "--warmup", "0", "--repeats", "2")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["family"] for r in rows] == ["pixelfolder", "stylegan2"]
    assert all(r["batch"] == 2 and r["throughput"] > 0 for r in rows)
    assert rows[1]["params"] == 417_171
    table = invoke("profile", "pixelfolder-tiny32", "stylegan2-tiny32", "--device", "cpu", "--warmup", "0",
                   "--repeats", "1", "-q")
    assert table.exit_code == 0 and "relative to pixelfolder-tiny32" in table.stdout


def test_profile_runtimes_side_by_side(monkeypatch):
    """--runtime: eager, ONNX Runtime and torch.compile per thread count, all pairs in one interleaved timing per
    thread count; what cannot run (a likelihood model in ONNX Runtime, torch.compile without a compiler) is a row
    saying why, not a crash."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import leangen.profile.timing as timing
    from leangen.profile import RUNTIME_ROW_KEYS

    rounds: list[int] = []
    real = timing.time_interleaved

    def recording(calls, *args, **kwargs):
        rounds.append(len(calls))
        return real(calls, *args, **kwargs)

    def no_compiler(*_a, **_k):
        raise RuntimeError("no C++ compiler (test)")

    monkeypatch.setattr(timing, "time_interleaved", recording)
    monkeypatch.setattr(torch, "compile", no_compiler)
    res = invoke("profile", "resnet-tiny32", "spn-tiny-32", "--runtime", "onnxruntime,torch-compile", "--threads",
                 "1,2", "--warmup", "0", "--repeats", "2", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 2 * 3 * 2 and all(set(RUNTIME_ROW_KEYS) <= set(r) for r in rows)
    assert rounds == [3, 3]  # per thread count: resnet eager + ORT, spn eager, one round-robin
    by = {(r["name"], r["runtime"], r["threads"]): r for r in rows}
    for n in (1, 2):
        eager, ort = by["resnet-tiny32", "torch", n], by["resnet-tiny32", "onnxruntime", n]
        assert eager["status"] == ort["status"] == "ok" and eager["speedup_vs_eager"] == 1.0
        assert ort["latency_ms"] > 0 and ort["throughput"] == pytest.approx(1e3 / ort["latency_ms"])
        assert ort["onnx_max_abs_diff"] < 1e-3 and ort["speedup_vs_eager"] > 0
        assert by["spn-tiny-32", "torch", n]["latency_ms"] > 0
        spn_ort = by["spn-tiny-32", "onnxruntime", n]
        assert spn_ort["latency_ms"] is None and spn_ort["status"].startswith("unavailable: a likelihood model")
        comp = by["resnet-tiny32", "torch-compile", n]
        assert comp["latency_ms"] is None and comp["status"] == "unavailable: RuntimeError: no C++ compiler (test)"
    assert {r["threads"] for r in rows} == {1, 2} and rows[0]["params"] == 71_795


def test_profile_runtime_markdown_and_option_errors():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    res = invoke("profile", "conv-translator-tiny32", "--runtime", "onnxruntime", "--threads", "1", "--warmup",
                 "0", "--repeats", "1", "--markdown", "-q")
    assert res.exit_code == 0, res.output
    assert "| model | runtime | threads |" in res.stdout and "| conv-translator-tiny32 | onnxruntime | 1 |" in \
        res.stdout and "max abs diff" in res.stdout
    for args, msg in ((["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"), (["--threads", "0,2"], "thread"),
                      (["--runtime", "onnxruntime", "--dtype", "bf16"], "fp32")):
        res = CliRunner().invoke(cli, ["profile", "conv-translator-tiny32", *args])
        assert res.exit_code != 0 and msg in res.output and "Traceback" not in res.output, args


def test_profile_bad_preset_is_a_clean_error():
    res = CliRunner().invoke(cli, ["profile", "stylegan2-265"])
    assert res.exit_code != 0
    assert "unknown preset 'stylegan2-265'" in res.output and "stylegan2-256" in res.output
    assert "Traceback" not in res.output


# ----------------------------------------------------------------------------------------------------------------------
# leangen generate


def test_generate_seeds_grid_and_determinism(tmp_path):
    from leangen.registry import get_preset

    saved = get_preset("stylegan2-tiny32").build("G").save_pretrained(tmp_path / "g")
    a, b = tmp_path / "a", tmp_path / "b"
    res = invoke("generate", "--network", str(saved), "--seeds", "0-3", "--grid", "--outdir", str(a), "--batch", "3",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in a.iterdir()) == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png",
                                                   "seed0003.png"]
    assert Image.open(a / "grid.png").size == (64, 64)  # 2x2 grid of 32 px images
    res = invoke("generate", "--network", str(saved), "--seeds", "0-3", "--outdir", str(b), "--batch", "3",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    # same seed, same call -> the same image, bit for bit
    for i in range(4):
        name = f"seed{i:04d}.png"
        assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name)))
    # the latent depends on the seed only, not on the batch it was drawn in (float rounding of a different batch
    # size may move a pixel by one level)
    c = tmp_path / "c"
    res = invoke("generate", "--network", str(saved), "--seeds", "2", "--outdir", str(c), "--device", "cpu")
    assert res.exit_code == 0, res.output
    diff = np.abs(np.asarray(Image.open(a / "seed0002.png"), dtype=int)
                  - np.asarray(Image.open(c / "seed0002.png"), dtype=int))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_generate_rejects_unsupported_options(tmp_path):
    res = CliRunner().invoke(cli, ["generate", "--network", "stylegan2-tiny32", "--seeds", "0", "--stages",
                                   "--outdir", str(tmp_path)])
    assert res.exit_code != 0 and "--stages" in res.output
    res = CliRunner().invoke(cli, ["generate", "--network", "stylegan2-tiny32", "--seeds", "0", "--size", "64",
                                   "--outdir", str(tmp_path)])
    assert res.exit_code != 0 and "--size" in res.output
