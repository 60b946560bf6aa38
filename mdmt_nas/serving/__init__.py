"""Serving a trained model: export (.pt2, ONNX), the raw-row MLflow pyfunc, model logging and registry."""
