"""``coe train all``: embedder → classifier → reward model → mapping, with one report."""
