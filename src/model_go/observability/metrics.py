"""Prometheus metrics of one server process (prometheus-client).

Served at `GET /metrics` on the public port to `Authorization: Bearer $MODELGO_METRICS_TOKEN`, or on
an internal port of its own (`MODELGO_METRICS_PORT`, bound to MODELGO_METRICS_HOST); with neither,
not at all. Labels are bounded and carry nothing personal: the route, a model the operator priced
(a request for an unknown model counts under "-"), a channel id and a status code; never a key, a
user, an address or any text of a request.

Each replica serves its own figures; sum them across replicas in the query. With neither the token
nor the port nobody can read them, and the server neither counts them nor imports prometheus-client
(NoMetrics); otherwise observability/prometheus.py counts them (state.py picks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from model_go.settings import Settings

__all__ = ["Metrics", "NoMetrics", "RequestFigures", "Sources", "published"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
NO_LABEL = "-"


@dataclass(slots=True)
class RequestFigures:
    """One finished relay request, as the metrics count it."""

    route: str
    status: int
    seconds: float
    model: str = NO_LABEL
    channel_id: int | None = None
    ttft_seconds: float | None = None
    overhead_seconds: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_micros: int = 0
    rate_limited: bool = False  # refused by model-go's own limits (not an upstream's 429)


@dataclass
class Sources:
    """Read at scrape time from the running state: circuits (channel id, model, state), the usage
    writer's queue depth and the age in seconds of its oldest unwritten row."""

    circuits: Callable[[], Iterable[tuple[int, str, str]]]
    queue_depth: Callable[[], int]
    flush_lag: Callable[[], float]


class Metrics(Protocol):
    """What the relay and the running state report to, and what /metrics and the internal port read."""

    def watch(self, sources: Sources) -> None: ...
    def request(self, f: RequestFigures) -> None: ...
    def attempt(self, channel_id: int, ok: bool) -> None: ...
    def exposition(self) -> tuple[bytes, str]: ...  # the body and its content type
    def serve(self, host: str, port: int) -> None: ...
    def close(self) -> None: ...


class NoMetrics:
    """The metrics of a server that publishes none (no token, no port): nothing is counted."""

    def watch(self, sources: Sources) -> None:
        pass

    def request(self, f: RequestFigures) -> None:
        pass

    def attempt(self, channel_id: int, ok: bool) -> None:
        pass

    def exposition(self) -> tuple[bytes, str]:
        raise RuntimeError("this server publishes no metrics")

    def serve(self, host: str, port: int) -> None:
        raise RuntimeError("this server publishes no metrics")

    def close(self) -> None:
        pass


def published(settings: Settings) -> bool:
    """Whether anyone can read this server's metrics: a token for /metrics, or a port of their own."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    return bool(token) or settings.metrics_port is not None


def monotonic_age(since: float | None) -> float:
    return 0.0 if since is None else max(time.monotonic() - since, 0.0)
