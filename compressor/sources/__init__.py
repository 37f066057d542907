"""Source models the compressor knows how to build: each one returns a ``compressor.source.Source``."""
