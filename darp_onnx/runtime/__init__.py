"""onnxruntime sessions and the choice of device (torch and onnxruntime)."""
