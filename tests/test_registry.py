"""The one registration mechanism (``leangen.utils.registry``) and the model contract accessor (``capability``)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from leangen.utils.registry import Registry, UnknownName


def test_registry_registers_discovers_and_names_close_matches() -> None:
    reg = Registry("thing", modules=("collections",))
    reg.register("alpha", 1)

    @reg.register("beta")
    class Beta:
        pass

    reg.register_lazy("ordered", "collections:OrderedDict")
    assert list(reg) == ["alpha", "beta", "ordered"] and "ordered" in reg and len(reg) == 3
    assert reg["beta"] is Beta and reg["ordered"].__name__ == "OrderedDict"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha", 2)
    with pytest.raises(KeyError) as info:
        reg["alpah"]
    assert isinstance(info.value, ValueError) and str(info.value) == "unknown thing 'alpah'; did you mean alpha?"
    assert reg.get("gamma") is None


def test_every_registry_answers_unknown_names_the_same_way() -> None:
    from leangen.convert import FORMATS
    from leangen.models.pretrained import MODEL_TYPES
    from leangen.presets import PRESETS
    from leangen.profile.runtimes import RUNTIMES
    from leangen.tasks import TASKS
    from leangen.train.objective import OBJECTIVES

    for reg, near in ((MODEL_TYPES, "stylegan2-generatr"), (PRESETS, "stylegan2-tiny3"), (OBJECTIVES, "gann"),
                      (TASKS, "pared"), (FORMATS, "stylegan"), (RUNTIMES, "torch-compil")):
        assert len(reg) > 0  # discovery ran on first use
        with pytest.raises(UnknownName, match="did you mean"):
            reg[near]


def test_capability_reads_declarations_with_the_contract_defaults() -> None:
    from leangen.models.pretrained import capability, model_label, model_task
    from leangen.presets import build

    plain = nn.Linear(2, 2)
    assert capability(plain, "input_kind") == "none" and capability(plain, "img_channels") == 3
    assert capability(plain, "bits") == 8 and model_label(plain) == "Linear" and model_task(plain) is None
    with pytest.raises(AttributeError):
        capability(plain, "input_knd")  # a typo is not a missing capability
    G = build("stylegan2-tiny32")
    assert capability(G, "z_dim") == G.z_dim and model_task(G) == "unconditional"


def test_translate_takes_inputs_and_the_old_labels_keyword() -> None:
    from leangen.presets import PRESETS

    preset = next(p for p in PRESETS.values() if p.task == "paired")
    T = preset.build("G").eval()
    labels = T.example_inputs(2)[0]
    new = T.translate(inputs=labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = T.translate(labels=labels)
    assert torch.equal(new, old) and any(issubclass(w.category, DeprecationWarning) for w in caught)
    with pytest.raises(TypeError, match="not both"):
        T.translate(labels, labels=labels)


def test_every_model_type_declares_its_kind_and_example_inputs() -> None:
    from leangen.models.pretrained import MODEL_TYPES, PretrainedModel

    for name, cls in MODEL_TYPES.items():
        assert cls.kind in ("generator", "likelihood", "translator", "discriminator"), name
        assert cls.example_inputs is not PretrainedModel.example_inputs, f"{name} declares no example_inputs"
    D = MODEL_TYPES["patch-discriminator"](num_classes=4, width=8, layers=2)
    labels, image = D.example_inputs(2)
    assert labels.shape == (2, 64, 64) and int(labels.max()) < 4 and image.shape == (2, 3, 64, 64)
    logits, _ = D(labels, image)
    assert logits.shape[0] == 2
