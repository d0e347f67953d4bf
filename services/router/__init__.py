"""Routing: which expert answers a request, and the decision record that says why."""
