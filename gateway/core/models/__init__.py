"""Models: the registry, their lifecycle, metadata, health, and the runner port."""
