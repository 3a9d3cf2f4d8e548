"""onnxruntime sessions, the one device resolver (device.py) and the one latency timer (timer.py)."""
