"""Style adapters (math, code) and their training data."""
