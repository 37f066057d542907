"""Early refusal: a request that the queue would hold past its queue timeout or its hard deadline is
refused at once (``Overloaded``: 429 / RESOURCE_EXHAUSTED), an early, cheap no instead of a late one after it
took a place in the queue (under overload, a FIFO of doomed requests serves nobody in time)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.core.batching.queue import RequestQueue
from gateway.core.config import TimeoutAction
from gateway.core.errors import Overloaded


@dataclass(frozen=True, slots=True)
class Admission:
    model: str
    fire_rows: int  # rows per batch a queue drains in (the largest preferred size, else max_batch_size)
    instances: int  # batches that run at once

    def predicted_wait_ns(self, queue: RequestQueue, rows: int, priority: int, compute_ns: int) -> int:
        """How long a request of ``rows`` would take to be answered: the batches needed for the rows
        queued ahead of it and its own, at the recent batch time ``compute_ns``, over the batches that run
        at once (0 until a batch has run)."""
        ahead = queue.rows_ahead(priority) + rows
        return -(-ahead // self.fire_rows) * compute_ns // self.instances

    def refuse_if_late(
        self,
        queue: RequestQueue,
        rows: int,
        priority: int,
        timeout_us: int,
        expires_ns: int,
        compute_ns: int,
    ) -> None:
        """Raise ``Overloaded`` when the predicted wait runs past the request's queue timeout (its own,
        where its level allows an override, else the level's; REJECT levels only) or its hard deadline
        ``expires_ns`` (0 = none). Nothing is refused before a batch has run (``compute_ns`` 0)."""
        if not compute_ns:
            return
        policy = queue.policy_of(priority)
        timeout = timeout_us if timeout_us and policy.allow_timeout_override else policy.default_timeout_us
        budgets = []
        if timeout > 0 and policy.timeout_action is TimeoutAction.REJECT:
            budgets.append((timeout * 1000, "queue timeout"))
        if expires_ns:
            budgets.append((expires_ns - time.monotonic_ns(), "deadline"))
        if not budgets:
            return
        budget_ns, what = min(budgets)
        wait_ns = self.predicted_wait_ns(queue, rows, priority, compute_ns)
        if wait_ns > budget_ns:
            raise Overloaded(
                f"model {self.model!r} would answer this request in about {wait_ns / 1e6:.0f} ms "
                f"({len(queue)} requests queued ahead), past its {max(0, budget_ns) / 1e6:.0f} ms {what}; "
                "refused early"
            )
