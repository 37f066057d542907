"""The ``varigate`` command: one entry point for compress, serve and loadtest."""
