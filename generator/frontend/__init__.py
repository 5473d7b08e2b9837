"""Model importers (ONNX, TFLite, torch.export) to Relax, and int8 folding."""
