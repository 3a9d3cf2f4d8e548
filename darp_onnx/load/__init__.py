"""Reading, checking and writing ONNX files; node attributes, model inputs, input shapes and tensor shapes."""
