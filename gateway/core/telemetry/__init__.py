"""What the core reports as it serves: the observer fan-out and Triton's statistics."""
