"""GAN losses and optimizers, shared by every adversarial objective (``gan``, ``paired_gan``, ``distill``,
``cyclegan``).

Written from the papers: the non-saturating logistic loss and lazy R1 of StyleGAN2 (Karras et al. 2020), the hinge
loss of SAGAN/SPADE (Lim & Ye 2017; Park et al. 2019), the least-squares loss of LSGAN (Mao et al. 2017; CycleGAN's),
feature matching of pix2pixHD (Wang et al. 2018).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F


def d_loss(kind: str, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss. ``kind``: ``nonsat`` (softplus(f) + softplus(-r)), ``hinge`` (relu(1-r) + relu(1+f)) or
    ``lsgan`` ((r-1)^2 + f^2; CycleGAN halves it), each term a mean."""
    if kind == "nonsat":
        return F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    if kind == "hinge":
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    if kind == "lsgan":
        return (logits_real - 1).square().mean() + logits_fake.square().mean()
    raise ValueError(f"unknown GAN loss {kind!r}: expected nonsat, hinge or lsgan")


def g_loss(kind: str, logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss: ``nonsat`` softplus(-f), ``hinge`` -f, ``lsgan`` (f-1)^2 (means)."""
    if kind == "nonsat":
        return F.softplus(-logits_fake).mean()
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "lsgan":
        return (logits_fake - 1).square().mean()
    raise ValueError(f"unknown GAN loss {kind!r}: expected nonsat, hinge or lsgan")


def r1_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``|d logits / d inputs|^2`` (``inputs`` must require grad and feed ``logits``)."""
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def feature_matching(feats_fake: Sequence[torch.Tensor], feats_real: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance of discriminator features (fake vs detached real), averaged over layers; in fp32 whatever
    precision the features were computed in (under autocast they are bf16/fp16)."""
    if not feats_fake:
        return torch.zeros([])
    losses = [(f.float() - r.detach().float()).abs().mean() for f, r in zip(feats_fake, feats_real)]
    return torch.stack(losses).mean()


def adam(params: Any, lr: float, betas: Sequence[float], eps: float = 1e-8, weight_decay: float = 0.0
         ) -> torch.optim.Adam:
    """``torch.optim.Adam`` in its fastest implementation for the parameters' device: ``fused`` (one kernel for all
    parameters) on CUDA, ``foreach`` (one op per kind over the whole list) elsewhere. The update is Adam's either
    way (equal to the plain loop within rounding); the state dict has the same layout, so snapshots load in any."""
    params = list(params)
    first = params[0]["params"][0] if params and isinstance(params[0], dict) else (params[0] if params else None)
    cuda = first is not None and first.device.type == "cuda" and first.dtype in (torch.float32, torch.float16,
                                                                                  torch.bfloat16)
    kind = {"fused": True} if cuda else {"foreach": True}
    return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])), eps=eps,
                            weight_decay=weight_decay, **kind)


def lazy_adam(params: Any, lr: float, betas: Sequence[float], interval: int) -> torch.optim.Adam:
    """Adam (:func:`adam`) whose lr and betas are scaled for lazy regularization every ``interval`` steps
    (``lr * c``, ``betas ** c`` with ``c = interval / (interval + 1)``)."""
    c = interval / (interval + 1) if interval and interval > 1 else 1.0
    return adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c), eps=1e-8)
