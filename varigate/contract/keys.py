"""Names on the wire and in config.pbtxt that the compressor, the gateway and clients agree on.

- ``PARAM_*``: keys of config.pbtxt ``parameters``. The compressor writes the logical model and the variant
  (``compressor/repository.py``); tests and operators may write the others; the gateway reads them all
  (``gateway/core/config.py``, ``gateway/core/selection/slo.py``).
- ``*_PARAMETER``: KServe v2 request/response ``parameters``. Clients (``loadtest``, users) send
  ``slo_ms``, ``max_accuracy_loss`` and ``deadline_ms``; the gateway answers with the serving variant and
  whether the SLO was met.
- ``*_HEADER``: the HTTP headers the gateway reads (``varigate-slo-ms``) and writes (the others).

Standard library only.
"""

from __future__ import annotations

# config.pbtxt ``parameters``
PARAM_LOGICAL_MODEL = "varigate.logical_model"
PARAM_VARIANT = "varigate.variant"
# comma-separated inputs the batcher may pad to a common length, "" or "none" to pad nothing. Absent:
# every non-BYTES input with a variable (-1) dimension.
PARAM_PAD_INPUTS = "varigate.pad_inputs"
PARAM_DEFAULT_SLO = "varigate.default_slo_ms"  # the model's SLO when a request names none
# "false": an incomplete batch waits out max_queue_delay exactly as Triton's does. Absent or "true": it stops
# waiting when no more arrivals are expected in time (gateway.core.batching.formation.quiet).
PARAM_ADAPTIVE_DELAY = "varigate.adaptive_delay"

# request parameters
SLO_PARAMETER = "slo_ms"
MAX_LOSS_PARAMETER = "max_accuracy_loss"
DEADLINE_PARAMETER = "deadline_ms"  # answer DEADLINE_EXCEEDED after this many ms
# response parameters
VARIANT_PARAMETER = "varigate_variant"
SLO_MET_PARAMETER = "varigate_slo_met"

# HTTP headers
VARIANT_HEADER = "varigate-variant"  # response: the serving variant
SLO_HEADER = "varigate-slo-ms"  # request: shortcut for the slo_ms parameter
SLO_MET_HEADER = "varigate-slo-met"  # response: "true" / "false" when an SLO applied
