"""Deployment exports. ``export_onnx`` writes a ``z -> image`` ONNX graph, ``export_translator_onnx`` a
``labels -> image`` one (either with a fixed or a dynamic batch axis); ``check_onnx`` / ``check_translator_onnx``
compare them with PyTorch in ONNX Runtime. ``export_model_onnx`` / ``check_model_onnx`` pick by the model's kind and
``unsupported_reason`` says why a model has no export."""
from leangen.export.onnx import (check_model_onnx, check_onnx, check_translator_onnx, export_model_onnx, export_onnx,
                                 export_translator_onnx, unsupported_reason)

__all__ = ["export_onnx", "check_onnx", "export_translator_onnx", "check_translator_onnx", "export_model_onnx",
           "check_model_onnx", "unsupported_reason"]
