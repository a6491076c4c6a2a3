"""Issue 21's optimizer and EMA speed-ups change nothing but speed: multi-tensor Adam equals the plain per-tensor
loop, the multi-tensor EMA equals the per-tensor formula."""
from __future__ import annotations

import copy

import torch
from torch import nn

from leangen.train.ema import update_ema
from leangen.train.losses import adam, lazy_adam


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.2), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(64, 1))


def test_adam_is_foreach_on_cpu_and_equals_the_plain_loop() -> None:
    a = net()
    b = copy.deepcopy(a)
    fast = adam(a.parameters(), lr=0.01, betas=(0.0, 0.99), weight_decay=0.001)
    plain = torch.optim.Adam(b.parameters(), lr=0.01, betas=(0.0, 0.99), eps=1e-8, weight_decay=0.001,
                             foreach=False)
    assert fast.defaults["foreach"] is True and not fast.defaults["fused"]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(4, 3, 8, 8, generator=g)
        for model, opt in ((a, fast), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    # The state dict has the plain layout: a snapshot of one loads into the other.
    plain.load_state_dict(fast.state_dict())


def test_lazy_adam_scales_and_uses_the_fast_adam() -> None:
    opt = lazy_adam(net()[0].parameters(), 0.002, [0.0, 0.99], 16)
    c = 16 / 17
    assert opt.defaults["lr"] == 0.002 * c and opt.defaults["betas"][1] == 0.99 ** c
    assert opt.defaults["foreach"] is True


def test_foreach_ema_equals_the_formula() -> None:
    src, ema = net(), net()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    src.register_buffer("w_avg", torch.full((3,), 2.0))
    ema.register_buffer("w_avg", torch.zeros(3))
    expected = [p.detach().lerp(q.detach(), 0.9) for p, q in zip(src.parameters(), ema.parameters())]
    update_ema(ema, src, 0.9)
    for e, p in zip(expected, ema.parameters()):
        assert torch.equal(e, p)
    assert torch.equal(ema.w_avg, src.w_avg)
