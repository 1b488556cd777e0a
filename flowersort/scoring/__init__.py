"""Photos to scores on every core, and the scores remembered between runs."""
