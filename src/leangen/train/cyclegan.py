"""The ``cyclegan`` objective: unpaired image-to-image translation (Zhu et al. 2017), as the official code trains it.

Modules (all trained; the preset's ``G`` and ``D`` components are each built twice):

- ``G_A``: A -> B, the entry (``leangen.load(run)`` returns it); ``G_B``: B -> A;
- ``D_A`` tells real B images from ``G_A``'s, ``D_B`` real A images from ``G_B``'s (the official code's naming:
  a discriminator is named after the generator it judges).

One step, with ``a``, ``b`` the batch's A and B images in [-1, 1]::

    G phase (D frozen):  L_G = lsgan_G(D_A(G_A(a))) + lsgan_G(D_B(G_B(b)))
                             + λ_A |G_B(G_A(a)) - a| + λ_B |G_A(G_B(b)) - b|                      (cycle)
                             + λ_id (λ_B |G_A(b) - b| + λ_A |G_B(a) - a|)                         (identity)
    D phase:             L_D_A = ½ lsgan_D(D_A(b), D_A(pool_B(G_A(a))))   and the same for D_B with A

L1 terms are means over pixels; ``pool_*`` is a history of 50 generated images (``ImagePool``) that replaces each
fake by a stored one with probability ½ once full, so D also sees older generators' output. One Adam optimizes
both generators, one both discriminators. ``lr_decay_start_kimg``/``lr_decay_kimg`` give the official linear
decay to 0 (counted in images, per step, instead of per epoch). Conv and linear weights start from N(0, 0.02)
(``init_gain``; 0 keeps PyTorch's default), biases from 0, as ``init_weights(..., "normal")`` does.

The pools are part of the objective's state (their images and their own random generator), so a resumed run
continues bit-exactly. Under ``torchrun`` every rank sees the whole batch's fakes (one all-gather) and draws the
same decisions, so the pools are one pool, identical on every rank, like the official single-process pool.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch
import torch.distributed as dist
from torch import nn

from leangen.models.pretrained import capability
from leangen.train.losses import adam, d_loss, g_loss
from leangen.train.objective import Objective, build_component

if TYPE_CHECKING:
    from leangen.data.batch import Batch
    from leangen.presets import Preset
    from leangen.train.options import TrainOptions
    from leangen.train.runtime import Runtime


class ImagePool:
    """A history of up to ``size`` generated images (CycleGAN's ``ImagePool``; Shrivastava et al. 2017).

    ``query(images)`` returns, per image: the image itself while the pool fills (it is also stored); once full,
    with probability ½ a stored image chosen uniformly (the new image takes its place), else the image itself.
    Decisions come from the pool's own CPU generator (seeded), never from the global RNG, so the pool is
    reproducible on any device and its state is ``state_dict()``.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = int(size)
        self.images: torch.Tensor | None = None  # [n, C, H, W], n <= size, on the device of the queries
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 0 if self.images is None else int(self.images.shape[0])

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` (detached) -> ``[B, C, H, W]``, each the input or a stored image (see class)."""
        images = images.detach()
        if self.size <= 0:
            return images
        out = []
        for img in images:
            if len(self) < self.size:
                img = img.clone()
                self.images = img[None] if self.images is None else torch.cat([self.images, img[None]])
                out.append(img)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                j = int(torch.randint(self.size, (), generator=self.generator))
                assert self.images is not None
                out.append(self.images[j].clone())
                self.images[j] = img
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"images": None if self.images is None else self.images.detach().cpu().clone(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device | str = "cpu") -> None:
        images = state.get("images")
        self.images = None if images is None else images.to(device)
        self.generator.set_state(state["generator"])


class CycleGANObjective(Objective):
    """Two generators and two PatchGANs trained with LSGAN, cycle and identity losses (see the module docstring)."""

    name: ClassVar[str] = "cyclegan"
    entry: ClassVar[str] = "G_A"
    hparams: ClassVar[Mapping[str, Any]] = {
        "lr": 0.0002,                 # Adam learning rate of both optimizers
        "betas": [0.5, 0.999],        # Adam betas
        "gan_loss": "lsgan",          # lsgan (the paper's) | nonsat | hinge (leangen.train.losses)
        "lambda_A": 10.0,             # cycle weight A -> B -> A
        "lambda_B": 10.0,             # cycle weight B -> A -> B
        "lambda_identity": 0.5,       # identity weight, relative to lambda_A / lambda_B; 0 disables
        "pool_size": 50,              # fakes kept per pool; 0 disables the pools
        "lr_decay_start_kimg": None,  # linear decay of the rate from here (kimg) ...
        "lr_decay_kimg": None,        # ... to 0 over this many kimg; None: constant rate
        "init_gain": 0.02,            # std of the N(0, std) init of conv/linear weights; 0: PyTorch's default init
    }

    def build(self, preset: "Preset", runtime: "Runtime", options: "TrainOptions") -> None:
        from leangen.models.base import Translator

        hp = {**self.hparams, **options.hparams}
        self.rt = runtime
        dev = runtime.device
        nets: dict[str, nn.Module] = {}
        for name, role in (("G_A", "G"), ("G_B", "G"), ("D_A", "D"), ("D_B", "D")):
            net = build_component(preset, role, options.overrides)
            if role == "G" and (not isinstance(net, Translator) or net.input_kind != "image"):
                raise ValueError(f"the cyclegan objective trains image-input Translator models; preset "
                                 f"{preset.name!r} has a {type(net).__name__} taking {capability(net, 'input_kind')}")
            _init_normal(net, float(hp["init_gain"]))
            nets[name] = net.to(dev).train()
        self.G_A, self.G_B, self.D_A, self.D_B = nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"]
        # One optimizer per pair, as the official code; gradients are reduced over both members at once.
        self._G_pair, self._D_pair = nn.ModuleList([self.G_A, self.G_B]), nn.ModuleList([self.D_A, self.D_B])
        self.gan_loss = str(hp["gan_loss"])
        d_loss(self.gan_loss, torch.zeros(1), torch.zeros(1))  # fail early on an unknown loss name
        self.lambda_A, self.lambda_B = float(hp["lambda_A"]), float(hp["lambda_B"])
        self.lambda_identity = float(hp["lambda_identity"])
        self.lr = float(hp["lr"])
        start, length = hp["lr_decay_start_kimg"], hp["lr_decay_kimg"]
        if (start is None) != (length is None) or (length is not None and float(length) <= 0):
            raise ValueError("set both lr_decay_start_kimg and lr_decay_kimg (> 0) for the linear decay, or neither")
        self.decay = None if start is None else (float(start) * 1000, float(length) * 1000)
        self.batch = int(options.batch or 1)  # type: ignore[arg-type]
        betas = tuple(float(b) for b in hp["betas"])
        self.opt_G = adam(self._G_pair.parameters(), lr=self.lr, betas=betas)
        self.opt_D = adam(self._D_pair.parameters(), lr=self.lr, betas=betas)
        seed = int(options.seed or 0)
        # Fakes of G_A (domain B) for D_A, fakes of G_B (domain A) for D_B.
        self.pool_B, self.pool_A = ImagePool(int(hp["pool_size"]), seed + 1), ImagePool(int(hp["pool_size"]), seed + 2)

    # -- the loop's accessors ---------------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def state_dict(self) -> dict[str, Any]:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, pool in (("pool_A", self.pool_A), ("pool_B", self.pool_B)):
            if name in state:
                pool.load_state_dict(state[name], self.rt.device)

    # -- one step ---------------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (linear decay to 0 over images seen, when configured)."""
        if self.decay is None:
            return self.lr
        start, length = self.decay
        return self.lr * max(0.0, 1.0 - max(0.0, step * self.batch - start) / length)

    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The G phase's loss (with graph), its detached parts, and the fakes ``G_A(a)``, ``G_B(b)``."""
        G_A, G_B, D_A, D_B = self.G_A, self.G_B, self.D_A, self.D_B
        with self.rt.autocast():
            fake_b, fake_a = G_A(real_a).float(), G_B(real_b).float()
            rec_a, rec_b = G_B(fake_b).float(), G_A(fake_a).float()
            adv_a = g_loss(self.gan_loss, D_A(None, fake_b)[0].float())
            adv_b = g_loss(self.gan_loss, D_B(None, fake_a)[0].float())
            cycle_a, cycle_b = (rec_a - real_a).abs().mean(), (rec_b - real_b).abs().mean()
            loss = adv_a + adv_b + self.lambda_A * cycle_a + self.lambda_B * cycle_b
            parts = {"loss_G_A": adv_a, "loss_G_B": adv_b, "cycle_A": cycle_a, "cycle_B": cycle_b}
            if self.lambda_identity > 0:
                # G_A maps into B, so a B image should pass through it unchanged (and G_B likewise for A).
                idt_b, idt_a = (G_A(real_b).float() - real_b).abs().mean(), (G_B(real_a).float() - real_a).abs().mean()
                loss = loss + self.lambda_identity * (self.lambda_B * idt_b + self.lambda_A * idt_a)
                parts.update(idt_A=idt_b, idt_B=idt_a)  # named after the generator, as the official code
        return loss, {k: v.detach() for k, v in parts.items()}, fake_b, fake_a

    def train_step(self, batch: "Batch", step: int) -> dict[str, torch.Tensor]:
        real_a, real_b = batch.image_float, batch.image_b_float
        lr = self.lr_at(step)
        for group in itertools.chain(self.opt_G.param_groups, self.opt_D.param_groups):
            group["lr"] = lr

        # G phase: both generators, Ds frozen (their gradients are not needed).
        self._D_pair.requires_grad_(False)
        loss_G, stats, fake_b, fake_a = self.generator_losses(real_a, real_b)
        self.optimizer_step(self.opt_G, self._G_pair, loss_G)

        # D phase: real up, pooled fakes down; halved, as the official code slows D relative to G.
        self._D_pair.requires_grad_(True)
        pooled_b, pooled_a = self._query(self.pool_B, fake_b), self._query(self.pool_A, fake_a)
        with self.rt.autocast():
            loss_D_A = 0.5 * d_loss(self.gan_loss, self.D_A(None, real_b)[0].float(),
                                    self.D_A(None, pooled_b)[0].float())
            loss_D_B = 0.5 * d_loss(self.gan_loss, self.D_B(None, real_a)[0].float(),
                                    self.D_B(None, pooled_a)[0].float())
        self.optimizer_step(self.opt_D, self._D_pair, loss_D_A + loss_D_B)
        stats.update(loss_D_A=loss_D_A.detach(), loss_D_B=loss_D_B.detach())
        return stats

    def _query(self, pool: ImagePool, fakes: torch.Tensor) -> torch.Tensor:
        """``pool.query`` on the whole batch over all ranks, this rank's part back (one pool on every rank)."""
        rt = self.rt
        if not rt.distributed:
            return pool.query(fakes)
        parts = [torch.empty_like(fakes) for _ in range(rt.world_size)]
        dist.all_gather(parts, fakes.detach().contiguous())
        n = fakes.shape[0]
        return pool.query(torch.cat(parts))[rt.rank * n:(rt.rank + 1) * n]

    # -- outputs ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """``[2N, 3, H, W]``: G_A of the preview batch's A images, then G_B of its B images."""
        batch: "Batch" = inputs["batch"]
        fake_b = self.G_A.translate(batch.image_float)  # type: ignore[operator]
        return torch.cat([fake_b, self.G_B.translate(batch.image_b_float)])  # type: ignore[operator]


@torch.no_grad()
def _init_normal(module: nn.Module, gain: float) -> None:
    """Conv/linear weights ~ N(0, gain), biases 0 (CycleGAN's ``init_type="normal"``); ``gain <= 0``: unchanged."""
    if gain <= 0:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # spectral-normed layers keep the raw weight in ``weight_orig``
            nn.init.normal_(getattr(m, "weight_orig", m.weight), 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
