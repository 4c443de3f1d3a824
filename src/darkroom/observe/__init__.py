"""What an operator sees of a running darkroom: request ids, logs and metrics."""
