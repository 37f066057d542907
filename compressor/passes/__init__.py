"""Compression passes: one module per pass, each with a typed config and one
``run(model, config, output) -> PassResult`` (``compressor.passes.base``)."""
