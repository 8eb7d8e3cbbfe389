"""A lab's life: names, plan, render, seeds, diff, apply, wait, hand-off, config stage, checkpoints, teardown."""
