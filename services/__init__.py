"""coe-router's online path: API schemas, routing, experts, and the pieces around them.

Nothing here imports Ray Serve: deployments in ``deployments/`` are thin adapters over these
modules, so the logic can be exercised with the real model and without a cluster.
"""
