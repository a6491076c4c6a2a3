"""Cached autoregressive sampling as one fixed-shape step per pixel, for CUDA graphs.

``MaskedConvDecoder.sample(cached=True)`` indexes its buffers with Python integers ``(i, j, c)``: every sub-pixel is
a different set of kernel arguments, so neither a CUDA graph nor ``torch.compile`` can capture one step and replay
it. :class:`StaticSampler` computes exactly the same thing with the position held in a device tensor: a step reads
its pixel's ``k x k`` windows with ``index_select`` on index tensors, writes with ``index_put_``, draws all ``C``
channels of the pixel (unrolled: ``C`` is fixed) and advances the position counter itself. Every buffer (inputs,
per-layer activations, uniforms, conditioning terms, the output) is allocated once, so on CUDA the step is captured
once as a graph and replayed ``H * W`` times (and reused across SPN slices: new uniforms and conditioning are copied
into the same buffers). Nothing in a step reads a value back to the host.

Values: the same windows, the same ``F.linear`` products, the same float64 inverse-CDF draw as the cached path, so
under the same uniforms the draws are the same (tested on the CPU, where the step runs eagerly).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from leangen.execution.compile import first_line
from leangen.ops.masked import MaskedConvDecoder, draw, to_unit


class StaticSampler:
    """Fixed-shape cached sampler of ``decoder`` for ``n`` images of ``height x width``.

    ``sample(uniforms [n, H, W, C], cond [n, cond_channels, H, W] or None)`` -> int64 ``[n, C, H, W]``, the draws of
    ``decoder.sample(n, H, W, uniforms, cond, temperature, cached=True)``. ``graph``: capture the step as a CUDA
    graph (CUDA devices only; ``None``: on CUDA). Built for eval mode and fixed weights: rebuild after training.
    """

    def __init__(self, decoder: MaskedConvDecoder, n: int, height: int, width: int, temperature: float = 1.0,
                 with_cond: bool = False, graph: bool | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        dec = decoder
        dev = dec.out.weight.device
        self.dec, self.n, self.h, self.w, self.temperature = dec, n, height, width, temperature
        self.graph_enabled = (dev.type == "cuda") if graph is None else graph
        if self.graph_enabled and dev.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        p, k, c = dec.kernel // 2, dec.kernel, dec.channels
        self.p, self.k = p, k
        with torch.no_grad():
            self.xbuf = torch.zeros(n, c, height + 2 * p, width + 2 * p, device=dev)
            self.hbufs = [torch.zeros(n, blk.conv.weight.shape[1], height + 2 * p, width + 2 * p, device=dev)
                          for blk in dec.blocks]
            self.out = torch.zeros(n, c, height, width, dtype=torch.long, device=dev)
            self.uniforms = torch.zeros(n, height, width, c, dtype=torch.float64, device=dev)
            self.cterms = [torch.zeros(n, blk.cond.out_channels, height, width, device=dev)
                           if with_cond and blk.cond is not None else None for blk in dec.blocks]
            self.w_in = dec.inp.masked_weight().flatten(1)
            self.w_conv = [blk.conv.masked_weight().flatten(1) for blk in dec.blocks]
            self.w_proj = [blk.proj.masked_weight().flatten(1) for blk in dec.blocks]
            self.w_out = dec.out.masked_weight().flatten(1)
        # Position state on the device: step t is pixel (t // W, t % W); the step advances t itself. Indices are
        # 1-element tensors, never 0-dim ones: PyTorch reads a 0-dim integer index back to the host (a sync, and a
        # graph break under dynamo).
        self.t = torch.zeros(1, dtype=torch.long, device=dev)
        rows = torch.arange(height, device=dev).repeat_interleave(width)
        cols = torch.arange(width, device=dev).repeat(height)
        self.rows, self.cols = rows, cols
        self.padded_flat = (rows + p) * (width + 2 * p) + cols + p  # pixel t in the flattened padded buffers
        self.window = torch.arange(k, device=dev)
        self._graph: torch.cuda.CUDAGraph | None = None

    # ------------------------------------------------------------------------------------------------------ the step
    def _windows(self, buf: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """``buf[:, :, i:i+k, j:j+k]`` flattened to ``[n, C*k*k]``, with ``i, j`` 1-element device tensors."""
        win = buf.index_select(2, i + self.window).index_select(3, j + self.window)
        return win.reshape(self.n, -1)

    def step(self) -> None:
        """Draw every channel of the next pixel and advance (no host synchronization; capturable)."""
        dec, n = self.dec, self.n
        t = self.t
        i, j = self.rows.index_select(0, t), self.cols.index_select(0, t)
        f = t  # the pixel in flattened [H * W] buffers (raster order)
        fp = self.padded_flat.index_select(0, t)  # ... and in the flattened padded ones
        out = self.out.flatten(2)  # [n, C, H*W] views: writes land in the buffers
        u = self.uniforms.view(n, self.h * self.w, dec.channels).index_select(1, f)[:, 0]  # [n, C]
        for c in range(dec.channels):
            h = F.linear(self._windows(self.xbuf, i, j), self.w_in, dec.inp.bias)
            for blk, hb, wc, wp, ct in zip(dec.blocks, self.hbufs, self.w_conv, self.w_proj, self.cterms):
                hb.view(n, hb.shape[1], -1).index_copy_(2, fp, h.unsqueeze(2))
                x = F.linear(F.relu(self._windows(hb, i, j)), wc, blk.conv.bias)
                if ct is not None:
                    x = x + ct.flatten(2).index_select(2, f)[:, :, 0]
                h = h + F.linear(F.relu(x), wp, blk.proj.bias)
            params = F.linear(F.relu(h), self.w_out, dec.out.bias).view(n, dec.channels, dec.width)[:, c]
            logp = dec.value_log_probs(params, out[:, :c].index_select(2, f)[:, :, 0], c)
            v = draw(logp, u[:, c], self.temperature)
            out[:, c].index_copy_(1, f, v.unsqueeze(1))
            self.xbuf.view(n, dec.channels, -1)[:, c].index_copy_(1, fp, to_unit(v, dec.levels).unsqueeze(1))
        self.t += 1

    # ---------------------------------------------------------------------------------------------------- sampling
    def _reset(self, uniforms: torch.Tensor, cond: torch.Tensor | None) -> None:
        self.xbuf.zero_()
        for hb in self.hbufs:
            hb.zero_()
        self.out.zero_()
        self.t.zero_()
        self.uniforms.copy_(uniforms)
        terms = self.dec._cond_terms(cond)
        for buf, term in zip(self.cterms, terms):
            if (buf is None) != (term is None):
                raise ValueError("conditioning given to a sampler built without it, or missing (with_cond)")
            if buf is not None:
                buf.copy_(term)

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Warm the step up on a side stream (CUDA graphs need it), restore the state, capture one step.

        Deterministic-algorithm mode is lifted while capturing: its index_put-based ``index_copy_`` may read sizes
        back to the host, which a capture forbids, and every write here hits one distinct index, so the default
        kernels are deterministic already.
        """
        saved = [b.clone() for b in (self.xbuf, *self.hbufs, self.out, self.t)]
        det = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            stream = torch.cuda.Stream(self.t.device)
            stream.wait_stream(torch.cuda.current_stream(self.t.device))
            with torch.cuda.stream(stream):
                self.step()
            torch.cuda.current_stream(self.t.device).wait_stream(stream)
            for b, s in zip((self.xbuf, *self.hbufs, self.out, self.t), saved):
                b.copy_(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step()  # recorded, not run: the state stays as restored
            return graph
        finally:
            torch.use_deterministic_algorithms(det, warn_only=warn_only)

    @torch.no_grad()
    def sample(self, uniforms: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """int64 ``[n, C, H, W]`` drawn with ``uniforms [n, H, W, C]`` (and ``cond``); a fresh tensor per call."""
        if tuple(uniforms.shape) != (self.n, self.h, self.w, self.dec.channels):
            raise ValueError(f"uniforms must be [{self.n}, {self.h}, {self.w}, {self.dec.channels}], got "
                             f"{tuple(uniforms.shape)}")
        self._reset(uniforms.to(self.uniforms.device, torch.float64), cond)
        if self.graph_enabled and self._graph is None:
            try:
                self._graph = self._capture()
            except Exception as e:  # a driver or PyTorch build that cannot capture: the same step, run eagerly
                warnings.warn(f"CUDA graph capture of the sampling step failed, running it eagerly "
                              f"({first_line(e)})", RuntimeWarning, stacklevel=2)
                self.graph_enabled = False
                self._reset(uniforms.to(self.uniforms.device, torch.float64), cond)
        if self._graph is not None:
            for _ in range(self.h * self.w):
                self._graph.replay()
        else:
            for _ in range(self.h * self.w):
                self.step()
        return self.out.clone()
