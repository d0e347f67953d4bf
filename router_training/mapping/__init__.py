"""Expert scoring and the category → expert mapping (CoE stage 2)."""
