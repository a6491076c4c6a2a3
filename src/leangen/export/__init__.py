"""Deployment exports. ``export_onnx`` writes a ``z -> image`` ONNX graph, ``export_translator_onnx`` a
``labels -> image`` one; ``check_onnx`` / ``check_translator_onnx`` compare them with PyTorch in ONNX Runtime."""
from leangen.export.onnx import check_onnx, check_translator_onnx, export_onnx, export_translator_onnx

__all__ = ["export_onnx", "check_onnx", "export_translator_onnx", "check_translator_onnx"]
