"""Deployment exports. ``export_onnx`` writes a ``z -> image`` ONNX graph; ``check_onnx`` compares it in ONNX Runtime."""
from leangen.export.onnx import check_onnx, export_onnx

__all__ = ["export_onnx", "check_onnx"]
