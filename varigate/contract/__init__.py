"""The repository contract: what the compressor, the gateway and the load tester share, and nothing else.

- ``card``: the variant card schema (the compressor writes it, the gateway and the benchmarks read it).
- ``layout``: the model repository's file names and how a Triton model name is formed.
- ``keys``: config.pbtxt parameter keys, request/response parameter names and HTTP headers.
- ``variants``: the variant vocabulary and the reference variant.

Standard library only (``tests/test_import_graph.py`` enforces it), so any of the three packages, and
any client of a Triton server, can import it without pulling in a framework.
"""
