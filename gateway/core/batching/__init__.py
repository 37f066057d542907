"""Batching: the queue, padding, batch formation and Triton's dynamic batcher."""
