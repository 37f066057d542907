"""Facts about a logical model's variants that every policy reads from their cards: accuracy order,
relative loss, and which variants are dominated on this hardware."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.core.selection.policy import Candidate, accuracy_score
from varigate.contract.variants import REFERENCE_VARIANT


def loss_of(c: Candidate) -> float:
    """The card's relative accuracy loss against fp32 (0 for the reference without a card; 1 for another
    variant without one)."""
    if c.card is None:
        return 0.0 if c.variant == REFERENCE_VARIANT else 1.0
    return min(1.0, max(0.0, c.card.accuracy.relative_loss))


def gate_ok(c: Candidate) -> bool:
    return c.card is None or c.card.gate.passed


def ranked(candidates: Sequence[Candidate], *, gate_first: bool = False) -> list[Candidate]:
    """Most accurate first; ties: the fp32 reference, then the name. Without ``gate_first``, variants that
    failed their gate are left out; with it, they come last."""
    order = sorted(
        candidates,
        key=lambda c: (not gate_ok(c), -accuracy_score(c), c.variant != REFERENCE_VARIANT, c.model_name),
    )
    return order if gate_first else [c for c in order if gate_ok(c)]


def dominated_variants(candidates: Sequence[Candidate]) -> dict[str, str]:
    """``{dominated model: the model that dominates it}``: another variant at least as accurate and at least
    as fast (profiled p50) at every batch size either card profiled, and strictly better in one. Variants
    without a profiled card are never compared."""
    profiled = [c for c in candidates if c.card is not None and c.card.profile]
    beaten: dict[str, str] = {}
    for a in profiled:
        for b in profiled:
            if a is b:
                continue
            assert a.card is not None and b.card is not None
            sizes = sorted({p.batch_size for p in a.card.profile} | {p.batch_size for p in b.card.profile})
            slow = [a.card.latency_ms(s, "p50_ms") for s in sizes]
            fast = [b.card.latency_ms(s, "p50_ms") for s in sizes]
            acc_a, acc_b = accuracy_score(a), accuracy_score(b)
            no_worse = acc_b >= acc_a and all(y <= x for x, y in zip(slow, fast, strict=True))
            if no_worse and (acc_b > acc_a or any(y < x for x, y in zip(slow, fast, strict=True))):
                beaten[a.model_name] = b.model_name
                break
    return beaten


class Demotions(Protocol):
    """What the policies read of the drift monitor (``drift.monitor.DriftMonitor``)."""

    def demoted(self, model: str, version: str) -> bool: ...


def demoted(drift: Demotions | None, c: Candidate) -> bool:
    """Whether drift demoted ``c`` (the fp32 reference never is: it is what the others are compared with)."""
    return drift is not None and c.variant != REFERENCE_VARIANT and drift.demoted(c.model_name, c.version)


def eligible_order(
    candidates: Sequence[Candidate], drift: Demotions | None
) -> tuple[list[str], dict[str, str]]:
    """The variants a policy may choose, most accurate first: not demoted (unless all are), passed their
    gate, not dominated; and the dominated ones (``dominated_variants``). Empty when none is eligible."""
    healthy = [c for c in candidates if not demoted(drift, c)] or list(candidates)
    beaten = dominated_variants(healthy)
    return [c.model_name for c in ranked(healthy) if c.model_name not in beaten], beaten
