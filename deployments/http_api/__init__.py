"""The ingress's HTTP concerns, one per module: errors, admission, expert calls, streaming, writes."""
