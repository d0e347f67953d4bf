"""Training the two-stage router: seed data splits, the category head, and its evaluation."""
