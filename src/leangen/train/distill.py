"""The distillation objective: a student learns to reproduce a frozen teacher on the same inputs.

Inputs are what the teacher takes: latents ``z`` for generators (both run with their constant noise), the batch's
label maps for translators (and its instance maps, for models with an instance-edge input, as ``paired_gan`` does).
Loss: ``output_weight * L1(student, teacher)``; plus ``recon_weight * L1(student, real image)`` for paired data (GAN
Compression's reconstruction term: the student learns from the data too, not only from the teacher's outputs);
plus an optional non-saturating adversarial term against a discriminator ``D`` on the data when ``gan_weight > 0``
and the preset has a ``D`` (a multi-scale ``D``: the mean over its scales); plus ``feature_weight`` times the MSE
between the student's and the teacher's kept channels.

The teacher is named by the ``teacher`` hyper-parameter (a run directory, snapshot or saved model; preset
``training`` or ``--hparam teacher=PATH``). It is loaded with ``leangen.load``, frozen, and never written into
snapshots: they record its path and a checksum, and a resumed run checks it is still the same.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
from torch import nn

from leangen.models.pretrained import capability, model_kind, model_label
from leangen.train.losses import adam, d_loss, g_loss
from leangen.train.objective import Objective, build_component
from leangen.train.paired import _instance_kwargs, _over_scales

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.presets import Preset
    from leangen.train.options import TrainOptions
    from leangen.train.runtime import Runtime


class DistillObjective(Objective):
    """Modules: ``G`` (student, trained), ``G_ema`` (its EMA; the entry), ``teacher`` (frozen), ``D`` (optional)."""

    name: ClassVar[str] = "distill"
    hparams: ClassVar[Mapping[str, Any]] = {
        "teacher": None,           # path of the teacher (run dir, snapshot or saved model); required
        "lr": 0.002,
        "betas": [0.0, 0.99],
        "output_weight": 1.0,      # L1 between student and teacher outputs
        "recon_weight": 0.0,       # L1 between the student and the real image, in [-1, 1] units (paired data)
        "gan_weight": 0.0,         # adversarial term on the data (needs a D component)
        "init": None,              # saved model to start the student from (e.g. a pruned model); None: random
        "feature_weight": 0.0,     # MSE on the norm outputs of the kept channels (init saved by ``leangen compress``)
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        import leangen

        hp = {**self.hparams, **options.hparams}
        self.rt = runtime
        if not hp["teacher"]:
            raise ValueError("the distill objective needs a teacher: --hparam teacher=RUN_DIR|SNAPSHOT|MODEL_DIR "
                             "(or a 'teacher' entry in the preset's training defaults)")
        G = build_component(preset, "G", options.overrides)
        if float(hp["recon_weight"]) > 0 and model_kind(G) == "generator":
            raise ValueError("recon_weight needs paired data: an unconditional generator's samples have no real "
                             "counterpart (use output_weight, gan_weight)")
        self.teacher_source = str(Path(hp["teacher"]).expanduser().resolve())
        teacher = leangen.load(self.teacher_source, device=runtime.device)
        self.teacher = teacher.eval().requires_grad_(False)
        if model_kind(G) != model_kind(teacher):
            raise ValueError(f"the student is a {model_kind(G)} but the teacher at {self.teacher_source} is a "
                             f"{model_kind(teacher)}")
        for attr in ("z_dim", "num_classes", "img_resolution"):
            if capability(G, attr) != capability(teacher, attr):
                raise ValueError(f"student and teacher differ in {attr}: {capability(G, attr)} vs "
                                 f"{capability(teacher, attr)}")
        if hp["init"]:
            _init_student(G, leangen.load(Path(hp["init"]).expanduser()), str(hp["init"]))
        self.G = G.to(runtime.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.output_weight, self.gan_weight = float(hp["output_weight"]), float(hp["gan_weight"])
        self.feature_weight, self.recon_weight = float(hp["feature_weight"]), float(hp["recon_weight"])
        if self.feature_weight > 0:
            self._features = _FeaturePairs(self.G, self.teacher, hp["init"])
        betas = tuple(float(b) for b in hp["betas"])
        self.opt_G = adam(self.G.parameters(), lr=float(hp["lr"]), betas=betas)
        self.D: nn.Module | None = None
        if self.gan_weight > 0:
            self.D = build_component(preset, "D", options.overrides).to(runtime.device).train()
            self.opt_D = adam(self.D.parameters(), lr=float(hp["lr"]), betas=betas)

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"G_ema": self.G_ema, "G": self.G, "teacher": self.teacher}
        if self.D is not None:
            mods["D"] = self.D
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, **({"D": self.opt_D} if self.D is not None else {})}

    def ema_pairs(self) -> dict[str, str]:
        return {"G_ema": "G"}

    def frozen_sources(self) -> dict[str, str]:
        return {"teacher": self.teacher_source}

    def metric_kwargs(self) -> dict[str, Any]:
        return {"teacher": self.teacher}

    def _run(self, model: nn.Module, inputs: torch.Tensor, instances: torch.Tensor | None = None) -> torch.Tensor:
        if model_kind(model) == "generator":
            return model(inputs, noise_mode="const")
        return model(inputs, **_instance_kwargs(model, instances))

    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        rt, n = self.rt, len(batch)
        instances = None
        if self.G.kind == "generator":  # type: ignore[attr-defined]
            inputs = torch.randn(n, self.G.z_dim, device=rt.device)  # type: ignore[attr-defined]
        else:
            if batch.condition is None:
                raise ValueError("distilling a translator needs paired data (label maps)")
            inputs, instances = batch.condition, batch.instances
        with torch.no_grad(), rt.autocast():
            target = self._run(self.teacher, inputs, instances).float()
        stats: dict[str, torch.Tensor] = {}
        if self.D is not None:
            self.D.requires_grad_(False)
        with rt.autocast():
            out = self._run(self.G, inputs, instances).float()
            l1 = (out - target).abs().mean()
            loss = self.output_weight * l1
            if self.recon_weight > 0:
                recon = (out - batch.image_float).abs().mean()
                loss = loss + self.recon_weight * recon
                stats["l1_real"] = recon.detach()
            if self.feature_weight > 0:
                feat = self._features.loss()
                loss = loss + self.feature_weight * feat
                stats["feature_mse"] = feat.detach()
            if self.D is not None:
                loss_adv = _over_scales(lambda lf: g_loss("nonsat", lf.float()), self._d(out, batch))
                loss = loss + self.gan_weight * loss_adv
                stats["loss_G_adv"] = loss_adv.detach()
        self.optimizer_step(self.opt_G, self.G, loss)
        stats["l1_teacher"] = l1.detach()
        if self.D is not None:
            self.D.requires_grad_(True)
            with rt.autocast():
                loss_D = _over_scales(lambda lr, lf: d_loss("nonsat", lr.float(), lf.float()),
                                      self._d(batch.image_float, batch), self._d(out.detach(), batch))
            self.optimizer_step(self.opt_D, self.D, loss_D)
            stats["loss_D"] = loss_D.detach()
        return stats

    def _d(self, images: torch.Tensor, batch: "Batch") -> Any:
        """D's logits ``[B, 1, h, w]``, or a list of them per scale for a multi-scale D."""
        assert self.D is not None
        if batch.condition is not None and self.G.kind == "translator":  # type: ignore[attr-defined]
            return self.D(batch.condition, images, **_instance_kwargs(self.D, batch.instances))[0]
        return self.D(images)

    @torch.no_grad()
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        if "seeds" in inputs:
            return self.G_ema.generate(list(inputs["seeds"]), noise_mode="const", output_type="pt")  # type: ignore[operator]
        batch = inputs["batch"]
        return self.G_ema.translate(batch.condition, output_type="pt",  # type: ignore[operator]
                                    **_instance_kwargs(self.G_ema, batch.instances))


def _init_student(G: nn.Module, init: nn.Module, source: str) -> None:
    """Load the weights of ``init`` into the freshly built student ``G``; they must be the same type and shapes."""
    from leangen.models.base import check_weights

    if model_label(init) != model_label(G):
        raise ValueError(f"init {source} holds a {model_label(init)!r}, the student is a {model_label(G)!r}")
    state = init.state_dict()
    check_weights(G, state, source)  # names the first tensor whose shape differs (e.g. other pruned widths)
    G.load_state_dict(state)


class _FeaturePairs:
    """Forward hooks recording the output of every norm that scores a prunable width (``channel_groups()``; the
    group's ``features`` where it names them) in the student and the teacher; ``loss()`` is the mean MSE between each student output and the teacher's output on the
    channels the student kept. The kept indices come from the pruned model's config.json (``kept_channels``)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, init: Any) -> None:
        import json

        if not init or not student.prunable:
            raise ValueError("feature_weight > 0 needs a prunable student started from a pruned model (init=PATH)")
        meta = json.loads((Path(init).expanduser() / "config.json").read_text())
        if "kept_channels" not in meta:
            raise ValueError(f"{init} does not record which teacher channels it kept (prune with leangen compress)")
        self.kept = [torch.tensor(k, dtype=torch.long) for k in meta["kept_channels"]]
        self.pairs = [(name, group.index) for group in student.channel_groups()
                      for name in (group.features or group.norms)]
        self.out: dict[str, dict[str, torch.Tensor]] = {"student": {}, "teacher": {}}
        for role, model in (("student", student), ("teacher", teacher)):
            mods = dict(model.named_modules())
            for norm, _ in self.pairs:
                mods[norm].register_forward_hook(self._hook(self.out[role], norm))

    @staticmethod
    def _hook(store: dict[str, torch.Tensor], name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            store[name] = output
        return hook

    def loss(self) -> torch.Tensor:
        s, t = self.out["student"], self.out["teacher"]
        terms = [(s[n].float() - t[n].float().index_select(1, self.kept[g].to(t[n].device))).pow(2).mean()
                 for n, g in self.pairs]
        s.clear()
        t.clear()
        return torch.stack(terms).mean()
