"""Floor 5, stage evaluate - run graphs over whole sequences in ONNX Runtime and score forecasts.

Metrics, accuracy, GIF strip, per-step feeds. Imports floors 0-4."""
