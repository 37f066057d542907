"""Thin protocol adapters over the core service: KServe v2 / Triton HTTP (FastAPI) and gRPC (grpc.aio),
their codecs, and the one table from core error kinds to HTTP status and gRPC code."""
