"""Operating varigate: the Grafana dashboard generated from code (``python -m varigate.ops.dashboard``), its
panels' PromQL (``panels``), Prometheus's HTTP API as the tests and the docs' images read it (``promql``),
and panel images rendered from a real Prometheus (``render``). Nothing here is imported by the gateway."""
