"""ASAP-Net's label-lookup MLP path (``tiled_mlp_labels``) equals the concatenated one-hot + positional input through
``tiled_mlp``, in the op and in whole models for every conditioning-channel case (instance edges to both streams,
to the low-res stream only, the official dropped last class), with gradients to the low-res stream."""
from __future__ import annotations

import copy

import pytest
import torch

from leangen.models.asapnet import ASAPNet
from leangen.ops.labels import one_hot_labels
from leangen.ops.pixelwise import (mlp_param_count, periodic_encoding, periodic_encoding_channels, tiled_mlp,
                                   tiled_mlp_labels)
from leangen.registry import get_preset

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_lookup,with_dense,depth", [(5, False, 3), (4, True, 2), (5, True, 1)])
def test_lookup_op_equals_the_concatenated_input(num_lookup: int, with_dense: bool, depth: int) -> None:
    torch.manual_seed(0)
    k, tile, b, h, w = 5, 4, 2, 8, 12
    labels = torch.randint(-1, k + 1, (b, h, w))  # ids outside [0, num_lookup) too: they select no row
    dense = torch.rand(b, 1, h, w) if with_dense else None
    chans = [num_lookup + (1 if with_dense else 0) + periodic_encoding_channels(tile)] + [6] * (depth - 1) + [3]
    params = torch.randn(b, mlp_param_count(chans), h // tile, w // tile)
    onehot = one_hot_labels(labels.clamp(0, k - 1), k) * ((labels >= 0) & (labels < k)).unsqueeze(1)
    parts = [onehot[:, :num_lookup]] + ([dense] if dense is not None else [])
    x = torch.cat(parts + [periodic_encoding(h, w, tile).expand(b, -1, -1, -1)], 1)
    ref = tiled_mlp(x, params, chans, tile)
    out = tiled_mlp_labels(labels, num_lookup, dense, params, chans, tile)
    assert out.shape == (b, 3, h, w)
    torch.testing.assert_close(out, ref, **TOL)


CASES = {  # name -> ASAPNet overrides of asapnet-tiny32
    "plain": {},
    "edges_lr_only": {"instance_edge": True},
    "edges_both": {"instance_edge": True, "lr_instance": False},
    "dropped_last_class": {"lr_instance": True},
}


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_whole_model_lookup_equals_reference(case: str, batch: int) -> None:
    torch.manual_seed(0)
    G: ASAPNet = get_preset("asapnet-tiny32").build(init_gain=1.0, **CASES[case])
    labels = torch.randint(0, G.num_classes, (batch, G.img_height, 2 * G.img_width))  # a second size, too
    instances = torch.randint(0, 4, labels.shape) if G.instance_edge else None
    out = {}
    for lookup in (True, False):
        G.mlp_lookup = lookup
        y = G(labels, instances)
        grads = torch.autograd.grad(y.square().mean(), [p for p in G.parameters()])
        out[lookup] = (y, grads)
    torch.testing.assert_close(out[True][0], out[False][0], **TOL)
    # Gradients: one relative norm (instance norms amplify rounding). The fp32 reference is itself ~1.5e-4 off fp64
    # here, the lookup ~1e-6 (measured), so the lookup is also held to fp64 at 1e-5.
    ga, gb = (torch.cat([g.flatten() for g in out[k][1]]) for k in (True, False))
    assert gb.norm() > 0 and (ga - gb).norm() <= 1e-3 * gb.norm()
    G64 = copy.deepcopy(G).double()
    G64.mlp_lookup = False
    y64 = G64(labels, instances)
    g64 = torch.cat([g.flatten() for g in torch.autograd.grad(y64.square().mean(), list(G64.parameters()))])
    assert (ga.double() - g64).norm() <= 1e-5 * g64.norm()
    # a float one-hot map takes the general path and gives the same image
    G.mlp_lookup = True
    onehot = one_hot_labels(labels, G.num_classes)
    with torch.no_grad():
        torch.testing.assert_close(G(onehot, instances), out[False][0], **TOL)
