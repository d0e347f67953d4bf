"""The DMoERM reward model's training job, its preference data and the seed-data generator."""
