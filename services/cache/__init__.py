"""The route-decision cache: an in-process LRU in front of Redis, versioned and fail-open."""
