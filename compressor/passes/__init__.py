"""Compression passes: one module per pass, each with a typed config and a pure ``apply``."""
