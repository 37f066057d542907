"""varigate load testing and benchmarks (through tritonclient, against varigate or any Triton server)."""
