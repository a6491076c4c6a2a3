"""ONNX export of the generators and the ``leangen export`` command."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from leangen.cli.main import cli  # noqa: E402
from leangen.export import check_onnx, export_onnx  # noqa: E402
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
