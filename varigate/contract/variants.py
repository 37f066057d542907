"""The variant vocabulary: the names a variant card's ``variant`` field and a config.pbtxt's
``varigate.variant`` take, in build order (each after the variant it starts from), and the reference.

The compressor builds in this order (``compressor/config.py``); the gateway's policies measure accuracy
loss against the reference (``gateway/core/selection/policy.py``); the benchmarks print variants in this
order.
Standard library only.
"""

from __future__ import annotations

REFERENCE_VARIANT = "fp32"  # the uncompressed model every card's accuracy loss is measured against
VARIANTS = (REFERENCE_VARIANT, "fp16", "int8", "pruned", "pruned-structured", "pruned-structured-int8")


def variant_rank(variant: str) -> int:
    """The variant's position in ``VARIANTS``; unknown names come after every known one."""
    return VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS)
