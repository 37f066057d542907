"""What late binding answers instead of a result: refusals at arrival (a client's deadline, or an SLO the
fastest variant cannot meet on an idle pool with ``--slo-infeasible reject``), requests shed as late on every
variant (``shed``), and requests that run past their hard deadline. Times are
``time.monotonic_ns()``, durations nanoseconds."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.batching.queue import QueuedRequest
from gateway.core.errors import DeadlineExceeded, Overloaded
from gateway.core.selection.events import PolicyObserver
from gateway.core.selection.slo import Infeasible, SloConfig, SloTerms


def refuse_early(
    logical: str, alone_ns: int, terms: SloTerms, now_ns: int, config: SloConfig, observer: PolicyObserver
) -> None:
    """Raise for a request that cannot be in time even alone on an idle pool (``alone_ns``, overhead
    included): ``DeadlineExceeded`` past the client's deadline, ``Overloaded`` past its SLO under
    ``reject``."""
    client = terms.client_deadline_ns
    if client is not None and now_ns + alone_ns > client:
        observer.rejection(logical, "deadline")
        raise DeadlineExceeded(
            f"model {logical!r} cannot answer within the client's deadline: the fastest variant needs "
            f"{alone_ns / 1e6:.1f} ms, {max(0, client - now_ns) / 1e6:.1f} ms are left"
        )
    if config.infeasible is Infeasible.REJECT and terms.slo_ns is not None and alone_ns > terms.slo_ns:
        observer.rejection(logical, "overloaded")
        raise Overloaded(
            f"model {logical!r} cannot meet the request's SLO of {terms.slo_ns / 1e6:g} ms on any "
            f"variant: the fastest needs {alone_ns / 1e6:.1f} ms on an idle pool"
        )


def shed(logical: str, items: Sequence[QueuedRequest], now_ns: int, observer: PolicyObserver) -> None:
    """Answer ``items`` with ``Overloaded``: each would end after its deadline even if the queue ran on the
    fastest variant at its typical time (``choice_plan.hopeless``), so serving it is a certain miss and
    costs the requests behind it their time."""
    for it in items:
        observer.rejection(logical, "overloaded")
        it.future.set_exception(
            Overloaded(
                f"model {logical!r} cannot meet the request's SLO on any variant: "
                f"{max(0, it.deadline_ns - now_ns) / 1e6:.1f} ms are left before its deadline, too few for "
                "the fastest variant with the requests queued ahead of it"
            )
        )


def expire(item: QueuedRequest, logical: str) -> None:
    """The request's hard deadline passed (its client stops waiting)."""
    if not item.future.done():
        where = "waiting in the queue" if item.served is None else "while its batch was running"
        item.future.set_exception(
            DeadlineExceeded(f"request to model {logical!r} ran past its deadline {where}")
        )
