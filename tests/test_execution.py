"""The execution policy (issue 17): one indexed device end to end, precision/TF32/determinism switches, the guarded
compile wrapper, and flex attention compiled per shape — the CPU side of the GPU path (tests/gpu runs it on CUDA)."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.execution import ExecutionPolicy, current_policy, guarded_compile, resolve_device


@pytest.fixture
def one_fake_gpu(monkeypatch):
    """``torch.cuda`` reporting one device; ``set_device`` validates its argument as the real one does (an index-less
    ``cuda`` device raises) and records it. Nothing else of CUDA is touched."""
    from torch.cuda._utils import _get_device_index

    calls: list[torch.device] = []

    def set_device(device):
        _get_device_index(device)  # "Expected a torch.device with a specified index": the crash of the first GPU run
        calls.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Fake GPU")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cudnn = torch.backends.cudnn
    saved = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic)
    yield calls
    (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic) = saved
    torch.use_deterministic_algorithms(False)
    ExecutionPolicy().activate()  # back to the CPU default for later tests


@pytest.mark.parametrize("spec", ["cuda", "auto", "CUDA", "cuda:0"])
def test_setup_runtime_gets_an_indexed_cuda_device(one_fake_gpu, spec):
    from leangen.train.runtime import setup_runtime

    rt = setup_runtime(spec)
    assert rt.device == torch.device("cuda", 0) and rt.device.index == 0
    assert one_fake_gpu == [torch.device("cuda", 0)]
    assert current_policy().device == torch.device("cuda", 0)


def test_cuda_means_the_local_rank_under_torchrun(one_fake_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == torch.device("cuda", 3)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 4 CUDA device"):
        resolve_device("cuda:4")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:-1"])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(ValueError, match="device"):
        resolve_device(spec)


def test_cuda_without_cuda_is_refused_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = CliRunner().invoke(cli, ["generate", "--network", "stylegan2-tiny32", "--seeds", "0", "--outdir", "x",
                                   "--device", "cuda"])
    assert res.exit_code == 2 and "CUDA is not available" in res.output and "Traceback" not in res.output


def test_policy_switches_tf32_and_determinism(one_fake_gpu):
    fast = ExecutionPolicy.create("cuda").activate()
    assert fast.use_tf32 and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    try:
        det = ExecutionPolicy.create("cuda", deterministic=True).activate()
        assert not det.use_tf32 and not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        assert det.record()["tf32"] is False and det.record()["deterministic"] is True
        no_tf32 = ExecutionPolicy.create("cuda", tf32=False).activate()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.are_deterministic_algorithms_enabled()
        assert no_tf32.record()["device_name"] == "Fake GPU"
    finally:
        torch.use_deterministic_algorithms(False)
    with pytest.raises(ValueError, match="deterministic"):
        ExecutionPolicy.create("cuda", deterministic=True, tf32=True)
    with pytest.raises(ValueError, match="precision"):
        ExecutionPolicy.create("cpu", precision="fp8")
    with pytest.raises(ValueError, match="cudagraphs"):
        ExecutionPolicy.create("cpu", compile="cudagraphs")


def test_every_computing_verb_receives_the_same_resolved_device(one_fake_gpu, monkeypatch, tmp_path):
    """``--device cuda`` (index-less, as users type it) reaches every verb's model loading as ``cuda:0``."""
    seen: dict[str, object] = {}

    def fake_load(source, device=None, **_):
        seen["device"] = device
        raise FileNotFoundError("stop here (test)")

    monkeypatch.setattr(leangen, "load", fake_load)
    runner = CliRunner()
    verbs = {
        "generate": ["--network", "x", "--seeds", "0", "--outdir", str(tmp_path / "g")],
        "translate": ["--network", "x", "--input", str(tmp_path), "--outdir", str(tmp_path / "t")],
        "eval": ["--network", "x", "--data", "openmoji-32-n64", "--metrics", "psnr"],
        "export": ["--network", "x", "--out", str(tmp_path / "m.onnx")],
    }
    for verb, args in verbs.items():
        seen.clear()
        res = runner.invoke(cli, [verb, *args, "--device", "cuda"])
        assert "stop here" in res.output, (verb, res.output)
        assert seen["device"] == torch.device("cuda", 0) and isinstance(seen["device"], torch.device), verb
    # train hands its policy object to the runtime without a string round trip
    import leangen.train.loop as loop

    got: dict[str, object] = {}

    def fake_setup(policy, amp=None):
        got["policy"] = policy
        raise RuntimeError("stop here (test)")

    monkeypatch.setattr(loop, "setup_runtime", fake_setup)
    res = runner.invoke(cli, ["train", "--preset", "stylegan2-tiny32", "--data", "openmoji-32-n64", "--steps", "1",
                              "--device", "cuda", "--precision", "bf16", "--deterministic"])
    policy = got["policy"]
    assert isinstance(policy, ExecutionPolicy) and policy.device == torch.device("cuda", 0)
    assert policy.precision == "bf16" and policy.deterministic


def test_guarded_compile_equals_eager_and_falls_back_with_the_reason():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 3, 1))
    x = torch.randn(2, 3, 8, 8)
    compiled = guarded_compile(net, "compile", backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=0, atol=1e-6)
    assert compiled.status == "compiled"

    def broken_backend(gm, inputs):
        raise RuntimeError("no C++ compiler (test)")

    logs: list[str] = []
    fallback = guarded_compile(net, "compile", name="net", log=logs.append, backend=broken_backend)
    with torch.no_grad():
        torch.testing.assert_close(fallback(x), net(x), rtol=0, atol=0)
    assert fallback.status.startswith("eager:") and "no C++ compiler" in fallback.status
    assert len(logs) == 1 and "net" in logs[0] and "running eagerly" in logs[0]


def test_generate_with_compile_draws_the_eager_images(tmp_path):
    """``leangen generate --compile compile`` (inductor) writes the images eager generation writes."""
    import numpy as np
    from PIL import Image

    model = leangen.load("stylegan2-tiny32")
    model.save_pretrained(tmp_path / "m")
    runner = CliRunner()
    for mode in ("off", "compile"):
        res = runner.invoke(cli, ["generate", "--network", str(tmp_path / "m"), "--seeds", "0-1", "--device", "cpu",
                                  "--compile", mode, "--outdir", str(tmp_path / mode)])
        assert res.exit_code == 0, res.output
        assert "running eagerly" not in res.output
    for seed in (0, 1):
        a = np.asarray(Image.open(tmp_path / "off" / f"seed{seed:04d}.png"), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "compile" / f"seed{seed:04d}.png"), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # float rounding may move a pixel across a quantization step
