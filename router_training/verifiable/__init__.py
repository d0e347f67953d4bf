"""Scores that need no judge: answers checked against known results.

Three categories have checks (``router_training.verifiable.checks``):

- **math**: the final number of the answer (after "Answer:", "=", or simply the last one; with
  thousands separators, currency, percent signs and fractions understood) equals the known result;
- **coding**: the answer's Python code passes the task's unit tests in a sandbox
  (``router_training.verifiable.sandbox``); pass@1 with greedy decoding;
- **extraction**: the JSON object or CSV row in the answer has the expected fields, compared one
  by one after normalising case, spacing and number formats; the score is the share matched.

The tasks are the project's own (``router_training/data/verifiable/``, made by
``router_training.verifiable.make_data``), in three disjoint splits: ``reward`` (preference pairs
for the reward model), ``scoring`` (the mapping job's evidence) and ``heldout`` (the pipeline's
end-to-end check, never used for scoring).
"""
