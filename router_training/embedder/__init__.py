"""Contrastive fine-tuning of the router's sentence embedder: dense, or with category experts."""
