"""ONNX export of the generators and the ``leangen export`` command."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from leangen.cli.main import cli  # noqa: E402
from leangen.export import check_onnx, export_model_onnx, export_onnx  # noqa: E402
from leangen.models.base import StyleGenerator  # noqa: E402
from leangen.registry import get_preset  # noqa: E402


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    G = get_preset(name).build()
    with torch.no_grad():
        for pname, p in G.named_parameters():
            if pname.endswith("noise.weight"):
                p.fill_(0.3)  # constant noise must be baked into the graph
        G.mapping(torch.randn(64, G.z_dim), update_w_avg=True)  # a non-zero w_avg makes truncation visible
    return G


@pytest.mark.parametrize("name", ["pixelfolder-tiny32", "cips-tiny32", "stylegan2-tiny32"])
def test_onnx_matches_pytorch(name: str, tmp_path) -> None:
    import onnx

    G = _tiny(name)
    path = export_onnx(G, tmp_path / f"{name}.onnx", batch=2, truncation_psi=0.7)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["z"] and [o.name for o in model.graph.output] == ["image"]
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 32, 32]
    assert check_onnx(G, path, atol=1e-4, truncation_psi=0.7) < 1e-4
    assert G.training  # export restores the mode


def test_export_argument_errors(tmp_path) -> None:
    G = _tiny("cips-tiny32")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(G, tmp_path / "g.onnx", opset=17)
    with pytest.raises(TypeError, match="generator"):
        export_onnx(get_preset("cips-tiny32").build("D"), tmp_path / "d.onnx")  # type: ignore[arg-type]


def test_cli_export(tmp_path) -> None:
    G = _tiny("pixelfolder-tiny32")
    G.save_pretrained(tmp_path / "g")
    runner = CliRunner()
    out = tmp_path / "pf.onnx"
    res = runner.invoke(cli, ["export", "--network", str(tmp_path / "g"), "--out", str(out), "--batch", "1",
                              "--trunc", "0.8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "max abs diff" in res.output
    res = runner.invoke(cli, ["export", "--network", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code != 0 and "neither an existing path nor a preset" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(cli, ["export", "--help"])
    assert res.exit_code == 0 and "Examples:" in res.output


# ----------------------------------------------------------------------------------------------------------------------
# dynamic batch: every family that exports, at batch 1 and 3


def _stylenat16() -> torch.nn.Module:
    """The smallest StyleNAT that has every kind of layer (4x4 MHSA, Hydra-NA, dilation): the 32 px preset takes
    ~40 s to export on 2 cores. Left on the ``auto`` backend: export must switch to ``gather`` by itself."""
    from leangen.models.stylenat import StyleNATGenerator

    G = StyleNATGenerator(16, channels=[32, 32, 32], dilations=[[1], [1], [1, 2]], kernels=[[3], [5], [7]],
                          min_heads=2, z_dim=32, w_dim=32, mapping_layers=2)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # default init gives a near-constant image: nothing to compare
    return G


def _pruned_student() -> torch.nn.Module:
    """A compressed ResNet student: half of every width pruned away (``leangen compress``'s prune step)."""
    from leangen.compress.prune import prune
    from leangen.models.resnet_generator import ResnetGenerator

    g = ResnetGenerator(resolution=32, ngf=8, n_blocks=2, norm_affine=True)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.weight[: m.weight.numel() // 2] = 0
                m.bias[: m.bias.numel() // 2] = 0
    return prune(g, threshold=1e-4)[0]


DYNAMIC = ["stylegan2-tiny32", "pixelfolder-tiny32", "cips-tiny32", "stylenat-16", "asapnet-tiny32",
           "pix2pixhd-tiny32", "spade-tiny32", "conv-translator-tiny32", "resnet-tiny32", "unet-tiny32",
           "resnet-student", "resnet-image-input"]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "stylenat-16":
        return _stylenat16()
    if name == "resnet-student":
        return _pruned_student()
    if name == "resnet-image-input":  # CycleGAN-style: an image in [-1, 1], no label classes
        from leangen.models.resnet_generator import ResnetGenerator

        return ResnetGenerator(num_classes=0, resolution=32, ngf=8, n_blocks=2, in_channels=3)
    preset = get_preset(name)
    return _tiny(name) if preset.task == "unconditional" else preset.build(preset.main_component)


@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_batch_onnx_matches_pytorch_at_batch_1_and_3(name: str, tmp_path) -> None:
    import onnx
    import onnxruntime as ort

    from leangen.export.onnx import translator_input

    model = _build(name)
    backends = [m.backend for m in model.modules() if hasattr(m, "backend")]
    path = export_model_onnx(model, tmp_path / f"{name}.onnx", dynamic_batch=True)
    assert [m.backend for m in model.modules() if hasattr(m, "backend")] == backends  # gather only while exporting
    graph = onnx.load(str(path)).graph
    for value in (graph.input[0], graph.output[0]):
        first = value.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.HasField("dim_value"), value.name  # a symbolic batch axis
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    for batch in (1, 3):
        if isinstance(model, StyleGenerator):
            x = torch.randn(batch, model.z_dim, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                ref = model(x, noise_mode="const")
        else:
            x = translator_input(model, batch, 32, 32, seed=batch)  # type: ignore[arg-type]
            with torch.no_grad():
                ref = model(x)
        (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        res = model.img_resolution  # type: ignore[attr-defined]
        assert out.shape == (batch, 3, res, res)
        assert float(ref.std()) > 1e-3  # the comparison is of images that vary, not of a flat output
        assert float((torch.from_numpy(out) - ref).abs().max()) < 1e-4, (name, batch)


def test_cli_dynamic_batch_and_refusals(tmp_path) -> None:
    runner = CliRunner()
    saved = _pruned_student().save_pretrained(tmp_path / "student")
    out = tmp_path / "student.onnx"
    res = runner.invoke(cli, ["export", "--network", str(saved), "--format", "onnx", "--out", str(out),
                              "--dynamic-batch", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "dynamic batch" in res.output and "matches PyTorch at batch 1 and 3" in res.output
    res = runner.invoke(cli, ["export", "--network", str(saved), "--out", str(out), "--batch", "2",
                              "--dynamic-batch"])
    assert res.exit_code != 0 and "give one of them" in res.output
    # a likelihood model: one line that says why there is nothing to export
    res = runner.invoke(cli, ["export", "--network", "spn-tiny-32", "--out", str(tmp_path / "spn.onnx"),
                              "--device", "cpu"])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "Traceback" not in res.output
    assert "holds a likelihood model (spn)" in errors[0] and "no image-producing forward" in errors[0]
    assert not (tmp_path / "spn.onnx").exists()
