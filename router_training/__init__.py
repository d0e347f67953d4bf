"""Training code and data for the router and its adapters."""
