"""Variant selection: policies, the latency model, SLO terms, baselines and their events."""
