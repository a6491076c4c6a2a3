"""ASAP-Net through the generic compression machinery: its low-res widths are ``channels`` scored by the affine
InstanceNorms (``channel_groups``), pruning zeroed channels is exact, MACs follow the model's own input (aspect ratio),
and ``leangen compress`` runs end to end on the tiny preset with nothing ASAP-specific in ``leangen.compress``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import leangen
from leangen.cli.main import cli
from leangen.compress.prune import executed_macs, prune
from leangen.models.asapnet import ASAPNet
from leangen.profile import count_params
from leangen.registry import get_preset
from leangen.train import TrainOptions, train

DATA = "openmoji-seg-32-n64"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANGEN_CACHE", str(tmp_path_factory.getbasetemp() / "leangen-cache"))


def _random_scales(g: ASAPNet, zero_fraction: float, seed: int = 0) -> ASAPNet:
    """Random (γ, β) in every low-res norm; a random ``zero_fraction`` of each width gets γ = β = 0."""
    gen = torch.Generator().manual_seed(seed)
    mods = dict(g.named_modules())
    with torch.no_grad():
        for group in g.channel_groups():
            (name,) = group.norms
            norm = mods[name]
            c = norm.weight.numel()
            norm.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            norm.bias.copy_(torch.randn(c, generator=gen) * 0.3)
            zero = torch.randperm(c, generator=gen)[: int(c * zero_fraction)]
            norm.weight[zero] = 0
            norm.bias[zero] = 0
    return g.eval()


# the tiny preset pads with zeros (the end-to-end test below); here the two other paddings, one with the aspect ratio
# and instance-edge input of the Cityscapes presets
@pytest.mark.parametrize("variant", [{"reflection_pad": True},
                                     {"aspect": 2, "instance_edge": True, "replicate_pad": True}])
def test_asapnet_pruning_of_zeroed_channels_is_exact_and_the_result_loads(variant: dict, tmp_path: Path) -> None:
    kwargs = {**get_preset("asapnet-tiny32").components["G"][1], **variant}
    torch.manual_seed(0)
    g = _random_scales(ASAPNet(**kwargs), 0.5)
    h, w = g.img_height, g.img_width
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, g.num_classes, (2, h, w), generator=gen)
    inst = torch.randint(0, 3, (2, h, w), generator=gen) if g.instance_edge else None
    pruned, info = prune(g, threshold=1e-4)
    # stem, two downsampling convs (the last widens to lr_max_width), two blocks; the per-pixel MLP is not pruned
    assert info["channels_before"] == [16, 16, 64, 64, 64] and info["channels_after"] == [8, 8, 32, 32, 32]
    assert type(pruned) is ASAPNet and pruned.config["channels"] == info["channels_after"]
    assert pruned.head.in_channels == 32 and pruned.hr_channels == g.hr_channels
    with torch.no_grad():
        ref = g(labels, inst)
        assert ref.std() > 1e-2 and torch.allclose(pruned(labels, inst), ref, atol=1e-5)
    assert info["macs_after"] == executed_macs("asapnet", pruned.config) < info["macs_before"]
    pruned.save_pretrained(tmp_path / "m")
    loaded = leangen.load(tmp_path / "m")
    assert isinstance(loaded, ASAPNet) and loaded.widths == info["channels_after"]
    assert count_params(loaded) == count_params(pruned) < count_params(g)
    with torch.no_grad():
        assert torch.equal(loaded(labels, inst), pruned(labels, inst))


def test_asapnet_configs_saved_without_channels_still_load(tmp_path: Path) -> None:
    g = get_preset("asapnet-tiny32").build("G").eval()
    assert g.widths == [16, 16, 64, 64, 64] and g.config["channels"] is None
    g.save_pretrained(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    meta = json.loads(cfg_path.read_text())
    del meta["config"]["channels"]  # what models saved (and converted) before the argument existed hold
    cfg_path.write_text(json.dumps(meta))
    loaded = leangen.load(tmp_path / "old")
    labels = torch.randint(0, 9, (1, 32, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert loaded.widths == g.widths and torch.equal(loaded(labels), g(labels))
    # channels == the defaults builds the same tensors
    assert count_params(ASAPNet(**{**g.config, "channels": g.widths})) == count_params(g)


def test_executed_macs_use_the_model_input_aspect_ratio() -> None:
    # Cityscapes 256x512: 48.88 GMACs in the ASAP-Net reference notes; a square 256x256 input would give half.
    model_type, kwargs = get_preset("asapnet-cityscapes-256x512").components["G"]
    assert executed_macs(model_type, kwargs) / 1e9 == pytest.approx(48.88, abs=0.01)


def test_compression_presets_take_only_their_objectives_hyper_parameters() -> None:
    from leangen.train.condense import CondenseObjective
    from leangen.train.distill import DistillObjective
    from leangen.train.options import LOOP_KEYS

    for base in ("asapnet-tiny32", "asapnet-cityscapes-256x512", "resnet-tiny32", "unet-256"):
        condense, distill = get_preset(f"{base}-condense"), get_preset(f"{base}-distill")
        assert set(condense.training) <= set(LOOP_KEYS) | set(CondenseObjective.hparams), base
        assert set(distill.training) <= set(LOOP_KEYS) | set(DistillObjective.hparams), base
        g_kwargs = condense.components["G"][1]
        # norm_affine only where the constructor has that switch: ASAP-Net's norms are always affine
        assert g_kwargs.get("norm_affine") is (None if base.startswith("asapnet") else True), base
        assert condense.components["D"] == get_preset(base).components["D"] == distill.components["D"]


def test_compress_cli_on_asapnet(tmp_path: Path) -> None:
    """condense -> prune (to a MACs budget) -> distill (kept-channel features + a multi-scale GAN term) -> report."""
    teacher = train(TrainOptions(preset="asapnet-tiny32", data=DATA, outdir=str(tmp_path / "runs"), steps=1, batch=4,
                                 tick=0.004, snap=1, device="cpu", progress=False, grid=4, metrics=[])).run_dir
    out = tmp_path / "compressed"
    args = ["compress", "--network", str(teacher), "--data", DATA, "--outdir", str(out), "--condense-steps", "1",
            "--distill-steps", "1", "--batch", "4", "--gmacs", "0.003", "--min-channels", "2", "--threads", "1",
            "--repeats", "1", "--no-onnx", "--no-compile", "--distill-hparam", "gan_weight=1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    student = leangen.load(out / "student")
    t, s = doc["teacher"], doc["student"]
    assert isinstance(student, ASAPNet) and student.config["channels"] == doc["steps"]["prune"]["channels_after"]
    assert s["params"] == count_params(student) < t["params"] == count_params(leangen.load(teacher))
    assert s["gmacs"] == pytest.approx(executed_macs("asapnet", student.config) / 1e9)
    assert s["gmacs"] <= 0.003 < t["gmacs"]
    assert student.translate(torch.zeros(1, 32, 32, dtype=torch.long)).shape == (1, 3, 32, 32)
    stats = [json.loads(x) for x in next((out / "distill" / "runs").glob("*/stats.jsonl")).read_text().splitlines()]
    assert stats[-1]["feature_mse"] >= 0 and stats[-1]["l1_teacher"] > 0 and "loss_D" in stats[-1]
