"""Benchmarks that regenerate docs/BENCHMARKS.md: each section is a module with ``run(args) -> str``
(markdown) and lands in ``docs/benchmarks/<section>.md``; BENCHMARKS.md concatenates the sections."""
