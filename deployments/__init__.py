"""Ray Serve deployments over ``services/``, and the builder that wires them into one app."""
