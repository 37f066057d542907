"""What late binding (``selection.late``) keeps per logical model, and the options a batch of it may bind
to: the eligible variants, most accurate first (``variants.eligible_order``, cached per set of variants),
each with its loss and whether the accuracy budget admits it now."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.batching.batcher import Batcher
from gateway.core.batching.formation import Rules
from gateway.core.batching.queue import QueuedRequest, RequestQueue
from gateway.core.selection.choice import Option
from gateway.core.selection.latency_model import LatencyModel
from gateway.core.selection.ledger import Ledger
from gateway.core.selection.policy import Candidate
from gateway.core.selection.slo import SloConfig
from gateway.core.selection.variants import Demotions, demoted, eligible_order, loss_of, ranked

Bound = tuple[Candidate, Batcher, Any]  # a READY variant, its batcher, and what the data plane calls it
Variants = Callable[[], Sequence[Bound]]
VariantsKey = tuple[tuple[str, str, bool], ...]  # (model, version, demoted) of each variant
ARRIVALS_KEPT = 1024  # arrival times kept per logical model, for its recent rate
_ORDERS_KEPT = 8  # orders cached per logical model: a few placements' subsets; old versions' keys go


@dataclass(slots=True)
class Logical:
    queue: RequestQueue
    variants: Variants
    ledger: Ledger
    inflight: int = 0  # accepted and not answered (queued, or in a batch it was bound to)
    known: dict[str, str] = field(default_factory=dict)  # model -> version the latency model knows
    order: list[str] = field(default_factory=list)  # eligible variants of the last choice, best first
    orders: dict[VariantsKey, list[str]] = field(default_factory=dict)  # eligible variants per set
    arrivals: deque[int] = field(default_factory=lambda: deque(maxlen=ARRIVALS_KEPT))  # enqueue times
    latest: QueuedRequest | None = None  # the newest request: the shape of those expected next


def options_for(
    m: Logical, bound: Sequence[Bound], config: SloConfig, drift: Demotions | None
) -> tuple[list[Option], dict[str, Bound]]:
    """The options of a batch bound to one of ``bound``, most accurate first, and each one's ``Bound``."""
    by_name = {b[0].model_name: b for b in bound}
    candidates = [b[0] for b in bound]
    key = tuple((c.model_name, c.version, demoted(drift, c)) for c in candidates)
    order = m.orders.get(key)
    if order is None:  # rebuilt only when the variants change
        order = eligible_order(candidates, drift)[0]
        order = order or [c.model_name for c in ranked(candidates, gate_first=True)]
        if len(m.orders) >= _ORDERS_KEPT:
            m.orders.clear()
        m.orders[key] = order
    m.order = order
    options = []
    budget = config.accuracy_budget
    for c in (by_name[name][0] for name in order):
        loss = loss_of(c)
        within = loss <= budget
        rules = Rules.of(c.config)
        room = rules.max_rows if within else m.ledger.room(loss, budget, rules.max_rows)
        options.append(Option(c.model_name, rules, loss, within, within or room > 0, room))
    return options, by_name


def know(latency: LatencyModel, m: Logical, bound: Sequence[Bound]) -> None:
    """Tell the latency model about variants (and versions) it has not seen; a reloaded one starts over."""
    for c, batcher, _ in bound:
        if m.known.get(c.model_name) != c.version:
            if c.model_name in m.known:
                latency.forget(c.model_name)  # reloaded: new files, new speed
            latency.know(c.model_name, c.card, batcher.runner.calibration)
            m.known[c.model_name] = c.version
