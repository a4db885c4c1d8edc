"""Channel health, in memory per process: a circuit breaker per (channel, model) and a count of
credential / quota refusals per channel. With several replicas on one Redis, `SharedHealth`
(relay/redis_health.py) keeps the circuits in Redis and this class as each replica's mirror of them
(and as its fallback while Redis is unreachable); refusals stay per process, and disabling is shared
through the database.

    closed ──failure_threshold failures in a row──▶ open: skipped for the cooldown (≥ Retry-After)
    open ──cooldown over: the next request, and only it, is the half-open probe──▶ half-open
    half-open ──probe answers──▶ closed        half-open ──probe fails──▶ open, cooldown doubled

Failures of requests that were already in flight when the circuit opened neither extend the
cooldown nor count as a failed probe, so a burst of clients costs the upstream at most the requests
in flight at that moment plus one probe per cooldown. Credential and quota refusals (`disable_after`
in a row) disable the channel: at once in this process, and in the database through the reporter so
the operator sees the reason and every replica stops routing to it.

The request path pays one dict lookup per attempt while a channel is healthy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

from model_go.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamUnavailable
from model_go.providers.base import Channel
from model_go.relay.policy import ChannelPolicy

REFUSED, ADMITTED, PROBE = 0, 1, 2
# a circuit that stayed closed this many max-cooldowns forgets its earlier trips
TRIP_MEMORY = 2.0


class Verdict(Enum):
    NEUTRAL = "neutral"  # the upstream answered; the request itself was at fault
    FAILURE = "failure"  # 429, 5xx, timeouts, broken connections: counts toward the circuit
    REFUSAL = "refusal"  # credentials or quota: counts toward disabling the channel


REFUSAL_CODES = frozenset({"upstream_auth_failed", "upstream_quota"})
# the upstream answered but its model failed this request (e.g. a malformed function call): another
# channel may do better, and the channel itself is healthy
MODEL_FAILURE_CODES = frozenset({"upstream_model_failed"})


def classify(exc: GatewayError) -> tuple[Verdict, bool]:
    """The one reading of a failed attempt: what it means for the channel's health, and whether
    another channel may be tried (an upstream's failure may not repeat elsewhere; a request the
    upstream called invalid would fail on every channel)."""
    upstream = isinstance(exc, UpstreamError | RateLimited) and not isinstance(exc, InvalidRequest)
    if exc.code in REFUSAL_CODES:
        return Verdict.REFUSAL, upstream
    if exc.code in MODEL_FAILURE_CODES:
        return Verdict.NEUTRAL, True
    if not upstream or exc.code == "upstream_model_not_found":
        return Verdict.NEUTRAL, upstream
    return Verdict.FAILURE, True


def verdict(exc: GatewayError) -> Verdict:
    return classify(exc)[0]


def retryable(exc: GatewayError) -> bool:
    return classify(exc)[1]


def retry_after_seconds(exc: GatewayError) -> float:
    value = exc.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else 0.0


class Reporter(Protocol):
    """Where health changes go to be persisted (off the request path)."""

    def error(self, channel_id: int, at: datetime, text: str) -> None: ...

    def cooldown(self, channel_id: int, until: datetime | None) -> None: ...

    def disable(self, channel_id: int, reason: str) -> None: ...


@dataclass
class Circuit:
    failures: int = 0  # in a row, while closed
    open_until: float = 0.0  # monotonic; 0.0 while closed, in the past while half-open
    probing: bool = False
    trips: int = 0
    last_trip: float = 0.0
    cause: GatewayError | None = None  # what opened it: told to clients while every channel cools
    # kept by SharedHealth only (relay/redis_health.py): this replica holds the one probe across
    # replicas until then (monotonic); a claim is on its way to Redis; a request found it open
    claim_until: float = 0.0
    claiming: bool = False
    wanted: bool = False


class Health:
    def __init__(self, clock: Callable[[], float] = time.monotonic, reporter: Reporter | None = None) -> None:
        self.clock = clock
        self.reporter = reporter
        self._circuits: dict[int, dict[str, Circuit]] = {}
        self._refusals: dict[int, int] = {}
        self._disabled: dict[int, Channel] = {}  # the Channel object: a reload after `enable` clears it

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]] | None]]:
        """Background work for the supervisor: (name, run, final flush). None in process."""
        return []

    def circuit_states(self) -> list[tuple[int, str, str]]:
        """(channel id, model, closed | open | half_open) of every circuit this process keeps."""
        now = self.clock()
        return [
            (channel_id, model, _state(circuit, now))
            for channel_id, circuits in list(self._circuits.items())
            for model, circuit in list(circuits.items())
        ]

    # -- the request path ---------------------------------------------------------------------

    def admit(self, channel: Channel, model: str) -> int:
        """REFUSED (skip this channel), ADMITTED, or PROBE (this request is the half-open probe)."""
        if self._disabled:
            marked = self._disabled.get(channel.id)
            if marked is channel:
                return REFUSED
            if marked is not None:  # re-enabled by the operator: the snapshot holds a new object
                del self._disabled[channel.id]
        circuits = self._circuits.get(channel.id)
        if circuits is None:
            return ADMITTED
        circuit = circuits.get(model)
        if circuit is None or not circuit.open_until:
            return ADMITTED
        return self._admit_open(channel, model, circuit)

    def succeeded(self, channel: Channel, model: str, admission: int, policy: ChannelPolicy) -> None:
        if self._refusals:
            self._refusals.pop(channel.id, None)
        circuits = self._circuits.get(channel.id)
        circuit = circuits.get(model) if circuits is not None else None
        if circuits is None or circuit is None:
            return
        self._count_success(channel, model, circuit, admission, policy)

    def release(self, channel: Channel, model: str, admission: int) -> None:
        """The attempt ended without a verdict (client gone, shutdown): let another request probe."""
        if admission != PROBE:
            return
        circuit = self._circuits.get(channel.id, {}).get(model)
        if circuit is not None:
            self._release(channel, model, circuit)

    def failed(
        self, channel: Channel, model: str, admission: int, exc: GatewayError, policy: ChannelPolicy
    ) -> None:
        kind = verdict(exc)
        if kind is Verdict.NEUTRAL:
            self.release(channel, model, admission)
            return
        if self.reporter is not None:
            self.reporter.error(channel.id, datetime.now(UTC), f"{exc.code} ({model})")
        if kind is Verdict.REFUSAL and policy.auto_disable:
            self.release(channel, model, admission)
            self._refused(channel, exc, policy)
            return
        self._count_failure(channel, model, admission, exc, policy)

    def refusal(self, channels: list[Channel], model: str) -> GatewayError:
        """The error for a request whose every candidate channel was skipped."""
        now = self.clock()
        soonest: Circuit | None = None
        for channel in channels:
            circuit = self._circuits.get(channel.id, {}).get(model)
            if (
                circuit is not None
                and circuit.open_until
                and (soonest is None or circuit.open_until < soonest.open_until)
            ):
                soonest = circuit
        if soonest is None:
            return UpstreamUnavailable(
                "No channel can serve this model right now. Please retry later.", code="no_channel_available"
            )
        wait = {"Retry-After": str(max(1, math.ceil(soonest.open_until - now)))}
        if isinstance(soonest.cause, RateLimited):
            return RateLimited(
                "The upstream provider is rate limiting requests. Please retry shortly.",
                code="upstream_rate_limited",
                headers=wait,
            )
        return UpstreamUnavailable(
            "Every channel serving this model is cooling down after upstream failures. Please retry shortly.",
            code="upstream_cooling_down",
            headers=wait,
        )

    # -- the circuit, in this process (SharedHealth overrides these four) -------------------------

    def _admit_open(self, channel: Channel, model: str, circuit: Circuit) -> int:
        if circuit.probing or self.clock() < circuit.open_until:
            return REFUSED
        circuit.probing = True
        return PROBE

    def _count_success(
        self, channel: Channel, model: str, circuit: Circuit, admission: int, policy: ChannelPolicy
    ) -> None:
        circuits = self._circuits[channel.id]
        if circuit.open_until:
            if admission != PROBE:
                return  # a request from before the circuit opened: only the probe may close it
            circuit.open_until, circuit.probing, circuit.cause = 0.0, False, None
            self._report_cooldown(channel.id)
        circuit.failures = 0
        # a circuit that tripped keeps its count of trips for a while, so a flapping upstream gets
        # ever longer cooldowns instead of ping-pong
        if not circuit.trips or self.clock() - circuit.last_trip > TRIP_MEMORY * policy.max_cooldown_seconds:
            del circuits[model]
            if not circuits:
                del self._circuits[channel.id]

    def _release(self, channel: Channel, model: str, circuit: Circuit) -> None:
        circuit.probing = False

    def _count_failure(
        self, channel: Channel, model: str, admission: int, exc: GatewayError, policy: ChannelPolicy
    ) -> None:
        circuit = self._circuits.setdefault(channel.id, {}).setdefault(model, Circuit())
        if circuit.open_until:
            if admission == PROBE:
                circuit.probing = False
                self._open(channel.id, circuit, exc, policy)
            return  # in flight before the circuit opened: no longer cooldown, no storm of probes
        circuit.failures += 1
        if circuit.failures >= policy.failure_threshold:
            self._open(channel.id, circuit, exc, policy)

    # -- transitions ----------------------------------------------------------------------------

    def _open(self, channel_id: int, circuit: Circuit, exc: GatewayError, policy: ChannelPolicy) -> None:
        now = self.clock()
        if circuit.trips and now - circuit.last_trip > TRIP_MEMORY * policy.max_cooldown_seconds:
            circuit.trips = 0
        circuit.trips += 1
        cooldown = policy.cooldown_seconds * 2 ** min(circuit.trips - 1, 16)
        cooldown = max(cooldown, retry_after_seconds(exc))
        circuit.open_until = now + min(cooldown, policy.max_cooldown_seconds)
        circuit.failures, circuit.last_trip, circuit.cause = 0, now, exc
        self._report_cooldown(channel_id)

    def _refused(self, channel: Channel, exc: GatewayError, policy: ChannelPolicy) -> None:
        count = self._refusals.get(channel.id, 0) + 1
        self._refusals[channel.id] = count
        if count < policy.disable_after or self._disabled.get(channel.id) is channel:
            return
        self._disabled[channel.id] = channel
        self._refusals.pop(channel.id, None)
        what = (
            "the upstream account is out of quota"
            if exc.code == "upstream_quota"
            else "the upstream refused the channel's credentials"
        )
        if self.reporter is not None:
            self.reporter.disable(channel.id, f"auto: {what} ({exc.code}, {count} times in a row)")

    def _report_cooldown(self, channel_id: int) -> None:
        if self.reporter is None:
            return
        circuits = self._circuits.get(channel_id, {})
        latest = max((c.open_until for c in circuits.values() if c.open_until), default=0.0)
        until = datetime.now(UTC) + timedelta(seconds=latest - self.clock()) if latest else None
        self.reporter.cooldown(channel_id, until)


def _state(circuit: Circuit, now: float) -> str:
    if circuit.open_until == 0.0:
        return "closed"
    return "open" if circuit.open_until > now else "half_open"
