"""Training: the loop (`train_and_evaluate`), its jitted steps, state, optimizer, schedule and monitoring."""
from resunetpp_jax.training.loop import train_and_evaluate
