"""Stage: evaluate - run graphs over whole sequences in ONNX Runtime and score forecasts (metrics, accuracy, GIF strip)."""
