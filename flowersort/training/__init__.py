"""Training a model on two folders of examples, and evaluating one."""
