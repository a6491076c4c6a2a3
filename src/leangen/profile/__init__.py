"""Efficiency profiling: parameters, executed multiply-adds, peak memory, latency and throughput.

Protocols:

- **MACs** (``macs``) are counted from the operations a forward actually executes, with one ``TorchDispatchMode``
  pass (``dispatch``) that reuses the per-op formulas of ``torch.utils.flop_counter`` (``MAC = FLOP / 2``). Counted
  ops: ``mm``, ``addmm``, ``bmm``, ``baddbmm``, every convolution (grouped and depthwise ones included — StyleGAN's
  [1,3,3,1] blur is a depthwise conv and is counted) and the attention kernels. Ignored: element-wise ops (bias,
  activation, noise, modulation/demodulation scaling, ``sin``), reductions, ``grid_sample``, ``F.pad``/fold/unfold
  copies. They are memory-bound and cheap in multiply-add terms, which is exactly why a MAC count is not a latency.
  A transposed conv is counted at its *input* resolution (what runs); ``convention="output_resolution"`` multiplies it
  by ``prod(stride)`` and drops the fixed FIR blur filters, reproducing PixelFolder's Table 1 count of StyleGAN2
  (upsampling convs at the output resolution; 83.74 G at 256 against 45.4 G executed).
  Tensors a model caches between calls because they do not depend on its input (coordinate features of
  CIPS/PixelFolder) are recomputed while counting, so the count is that of a complete forward, as in the official
  code; at steady state these cost < 3% of the total.
- **Counting runs on the ``meta`` device** whenever the model can be rebuilt there (every registered model), so
  counting CIPS-1024 (548M parameters) takes a second and no memory; the same pass estimates peak memory, which
  decides whether a model is built at all (``runner``).
- **Peak memory** (``memory``): on CUDA ``torch.cuda.max_memory_allocated`` over one forward; elsewhere the peak of
  live tensor storages seen by a dispatch mode (``mem_method`` in each row says which). Both add the model's own
  parameters and buffers and its inputs, and start with the model's constant cache empty so cached tensors count
  once. Allocator-internal scratch space (oneDNN, cuBLAS workspaces) is not a tensor and is not included on CPU.
- **Timing** (``timing``): several models are measured in the same process, interleaved round-robin under
  ``torch.inference_mode()``, with the same thread count, so their ratios are fair; figures are medians per batch.
- **Runtimes** (``runtimes``): the same models through PyTorch eager, ``torch.compile`` and ONNX Runtime on the CPU,
  every (model, runtime) pair interleaved in one round-robin per thread count (``profile_runtimes``,
  ``measure_runtimes``; ``leangen compress`` reports through the same code).
"""
from leangen.profile.device import device_name
from leangen.profile.inputs import example_inputs
from leangen.profile.macs import MacConvention, MacCount, count_macs, count_macs_detailed, count_params
from leangen.profile.memory import state_bytes
from leangen.profile.runner import DTYPES, ROW_KEYS, DType, profile_models, ratio_table
from leangen.profile.runtimes import RUNTIME_ROW_KEYS, RUNTIMES, measure_runtimes, profile_runtimes

__all__ = ["count_params", "count_macs", "count_macs_detailed", "MacCount", "MacConvention", "example_inputs",
           "profile_models", "ratio_table", "state_bytes", "device_name", "ROW_KEYS", "DTYPES", "DType", "RUNTIMES",
           "RUNTIME_ROW_KEYS", "measure_runtimes", "profile_runtimes"]
