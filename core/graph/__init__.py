"""The model: the IR, ONNX / darknet / .mlir import, the import passes and the reference's
canonicalisation, the model's input preprocessing, and the float interpreter."""
