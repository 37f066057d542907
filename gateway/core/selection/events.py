"""What the selection policies and the drift monitor report, for metrics and logs. ``gateway/metrics.py``
implements ``PolicyObserver``; the core never imports a metrics library. ``model`` is the logical model,
``variant`` the variant's Triton model name (``minilm.int8``), as in the request metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class PolicyObserver(Protocol):
    def selection(self, model: str, variant: str, reason: str) -> None:
        """The policy chose ``variant``; ``reason`` says why (``selection.slo_policy.Reason``)."""
        ...

    def rejection(self, model: str, reason: str) -> None:
        """A request was refused before it was queued (``overloaded`` or ``deadline``)."""
        ...

    def switch(self, model: str, old: str, new: str, direction: str) -> None:
        """The policy's ceiling variant changed (``direction`` is ``down`` or ``up``)."""
        ...

    def prediction(self, model: str, variant: str, predicted_s: float, measured_s: float) -> None:
        """A routed request finished: the latency predicted when it was routed, and the measured one."""
        ...

    def batch_prediction(
        self, model: str, variant: str, mode: str, predicted_s: float, measured_s: float
    ) -> None:
        """A batch the late-binding scheduler bound ran: its predicted and measured compute time, and its
        pool mode (``wide``, ``narrow``, ``fixed``)."""
        ...

    def mix(self, model: str, shares: Mapping[str, float], loss_mean: float) -> None:
        """Share of recent selections per variant, and the running mean relative accuracy loss."""
        ...

    def dominated(self, model: str, variant: str, by: str) -> None:
        """``variant`` is left out: ``by`` is at least as accurate and at least as fast (``by`` is ""
        when it no longer is, e.g. because ``by`` was demoted)."""
        ...

    def shadow(self, model: str, variant: str, outcome: str, agreement: float | None) -> None:
        """A shadow comparison against the reference (``compared``, ``failed``) or why none ran
        (``busy``); ``agreement`` is the mean over the compared rows."""
        ...

    def drift(self, model: str, variant: str, live: float, samples: int, drift: float) -> None:
        """Live agreement with the reference over the window, its sample count, card value minus live."""
        ...

    def demotion(self, model: str, variant: str, demoted: bool) -> None:
        """``variant`` was demoted (its live agreement is confidently below its gate) or recovered."""
        ...

    def labelled(self, model: str, variant: str, correct: int, total: int) -> None:
        """Ground-truth labels arrived for requests ``variant`` served: ``correct`` of ``total`` right."""
        ...


class NullPolicyObserver:
    def selection(self, model: str, variant: str, reason: str) -> None:
        pass

    def rejection(self, model: str, reason: str) -> None:
        pass

    def switch(self, model: str, old: str, new: str, direction: str) -> None:
        pass

    def prediction(self, model: str, variant: str, predicted_s: float, measured_s: float) -> None:
        pass

    def batch_prediction(
        self, model: str, variant: str, mode: str, predicted_s: float, measured_s: float
    ) -> None:
        pass

    def mix(self, model: str, shares: Mapping[str, float], loss_mean: float) -> None:
        pass

    def dominated(self, model: str, variant: str, by: str) -> None:
        pass

    def shadow(self, model: str, variant: str, outcome: str, agreement: float | None) -> None:
        pass

    def drift(self, model: str, variant: str, live: float, samples: int, drift: float) -> None:
        pass

    def demotion(self, model: str, variant: str, demoted: bool) -> None:
        pass

    def labelled(self, model: str, variant: str, correct: int, total: int) -> None:
        pass
