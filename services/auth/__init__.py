"""API keys, roles and per-key rate limits, shared by every ingress replica through Redis."""
