"""Meta-training: truncated unrolls, the schedule and the training loop."""
