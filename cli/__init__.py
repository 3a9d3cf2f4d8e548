"""The darp-onnx command line (installed as the package darp_onnx.cli)."""
