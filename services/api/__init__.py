"""The OpenAI-compatible wire format: request parsing, response models and error bodies."""
