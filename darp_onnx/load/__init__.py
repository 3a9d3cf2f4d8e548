"""Reading, checking and writing ONNX files; model inputs, input shapes and tensor shapes."""
