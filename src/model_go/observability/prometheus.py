"""The Prometheus side of observability/metrics.py (prometheus-client), imported only by a server that
publishes its metrics (MODELGO_METRICS_TOKEN or MODELGO_METRICS_PORT)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from model_go.observability.metrics import (
    LATENCY_BUCKETS,
    NO_LABEL,
    OVERHEAD_BUCKETS,
    RequestFigures,
    Sources,
)


class _StateCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily]:
        circuits = GaugeMetricFamily(
            "modelgo_circuit_open",
            "1 while a channel's circuit for a model is open or half-open (skipped or probing), else 0",
            labels=["channel_id", "model", "state"],
        )
        for channel_id, model, state in self.sources.circuits():
            circuits.add_metric([str(channel_id), model, state], 0.0 if state == "closed" else 1.0)
        yield circuits
        yield GaugeMetricFamily(
            "modelgo_usage_queue_rows",
            "Settled requests whose usage rows await the next flush",
            value=self.sources.queue_depth(),
        )
        yield GaugeMetricFamily(
            "modelgo_usage_flush_lag_seconds",
            "Age of the oldest usage row not yet written (0 when none)",
            value=self.sources.flush_lag(),
        )


class _Series:
    """The children one kind of request updates."""

    __slots__ = ("cached", "completion", "cost", "latency", "overhead", "prompt", "requests", "ttft")

    def __init__(self, m: PrometheusMetrics, f: RequestFigures) -> None:
        channel = NO_LABEL if f.channel_id is None else str(f.channel_id)
        self.requests = m.requests.labels(f.route, f.model, channel, str(f.status))
        self.latency = m.latency.labels(f.route)
        self.ttft = m.ttft.labels(f.route)
        self.overhead = m.overhead.labels(f.route)
        self.prompt = m.tokens.labels(f.model, "prompt")
        self.completion = m.tokens.labels(f.model, "completion")
        self.cached = m.tokens.labels(f.model, "cached")
        self.cost = m.cost.labels(f.model)


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelgo_requests",
            "Relay requests answered",
            ["route", "model", "channel_id", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelgo_request_duration_seconds",
            "Relay request time, first byte in to last byte out",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "modelgo_time_to_first_token_seconds",
            "Time to the first generated output sent",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "modelgo_overhead_seconds",
            "Time spent inside model-go, excluding the upstream",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            "modelgo_upstream_attempts",
            "Upstream attempts by outcome (ok, failed)",
            ["channel_id", "outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "modelgo_tokens",
            "Tokens billed by kind (prompt, completion, cached)",
            ["model", "kind"],
            registry=registry,
        )
        self.cost = Counter("modelgo_cost_usd", "USD billed", ["model"], registry=registry)
        self.rate_limited = Counter(
            "modelgo_rate_limited",
            "Requests refused by model-go's own rate limits",
            ["route"],
            registry=registry,
        )
        self._server: Any = None
        self._lock = threading.Lock()
        # the labelled children of one (route, model, channel, status), looked up once: prometheus'
        # labels() validates and locks on every call, a fifth of what a request's metrics cost
        self._series: dict[tuple[str, str, int | None, int], _Series] = {}

    def watch(self, sources: Sources) -> None:
        self.registry.register(_StateCollector(sources))

    def request(self, f: RequestFigures) -> None:
        key = (f.route, f.model, f.channel_id, f.status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, f)
        series.requests.inc()
        series.latency.observe(f.seconds)
        if f.ttft_seconds is not None:
            series.ttft.observe(f.ttft_seconds)
        if f.overhead_seconds is not None:
            series.overhead.observe(max(f.overhead_seconds, 0.0))
        if f.rate_limited:
            self.rate_limited.labels(f.route).inc()
        if f.prompt_tokens:
            series.prompt.inc(f.prompt_tokens)
        if f.completion_tokens:
            series.completion.inc(f.completion_tokens)
        if f.cached_tokens:
            series.cached.inc(f.cached_tokens)
        if f.cost_micros:
            series.cost.inc(f.cost_micros / 1_000_000)

    def attempt(self, channel_id: int, ok: bool) -> None:
        self.attempts.labels(str(channel_id), "ok" if ok else "failed").inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- the internal port ----------------------------------------------------------------------

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port from a thread of its own (prometheus-client's server)."""
        with self._lock:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
