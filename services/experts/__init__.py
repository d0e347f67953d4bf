"""Expert LLMs: their configuration, loading, batched generation and remote backends."""
