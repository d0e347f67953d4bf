"""DMoERM reward model: the network (shared by training and serving) and the runtime scorer.

``services.rewards.model`` holds :class:`RewardModel` and :class:`RewardScore`;
``services.rewards.network`` the modules; ``services.rewards.spec`` the architecture record.
"""
