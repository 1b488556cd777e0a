"""The model: its input features, the two-stage network, the model file, the metrics."""
