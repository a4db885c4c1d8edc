"""Channel health on a fake clock: thresholds, cooldowns, the single half-open probe, backoff, the
no-storm rule for requests already in flight, Retry-After, and disabling on refused credentials."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import pytest

from model_go.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError, UpstreamTimeout
from model_go.providers.base import Channel
from model_go.relay.health import ADMITTED, PROBE, REFUSED, Health, Verdict, verdict
from model_go.relay.policy import ChannelPolicy, build
from model_go.settings import Settings

POLICY = ChannelPolicy(connect_timeout=1, first_byte_timeout=1, idle_timeout=1, total_timeout=1)
M = "model-a"


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    errors: list[tuple[int, str]] = field(default_factory=list)
    cooldowns: list[tuple[int, datetime | None]] = field(default_factory=list)
    disabled: list[tuple[int, str]] = field(default_factory=list)

    def error(self, channel_id: int, at: datetime, text: str) -> None:
        self.errors.append((channel_id, text))

    def cooldown(self, channel_id: int, until: datetime | None) -> None:
        self.cooldowns.append((channel_id, until))

    def disable(self, channel_id: int, reason: str) -> None:
        self.disabled.append((channel_id, reason))


def channel(channel_id: int = 1, **config: object) -> Channel:
    return Channel(channel_id, f"c{channel_id}", "openai", "http://x", None, (M,), {}, 0, 1, config)


def make() -> tuple[Health, Clock, Recorder]:
    clock, recorder = Clock(), Recorder()
    health = Health(clock)
    health.reporter = recorder
    return health, clock, recorder


def fail(health: Health, ch: Channel, exc: GatewayError | None = None, policy: ChannelPolicy = POLICY) -> int:
    admission = health.admit(ch, M)
    assert admission != REFUSED
    health.failed(ch, M, admission, exc or UpstreamError(), policy)
    return admission


def test_verdicts() -> None:
    assert verdict(UpstreamError(code="upstream_auth_failed")) is Verdict.REFUSAL
    assert verdict(UpstreamError(code="upstream_quota")) is Verdict.REFUSAL
    assert verdict(RateLimited()) is Verdict.FAILURE
    assert verdict(UpstreamTimeout()) is Verdict.FAILURE
    assert verdict(UpstreamError()) is Verdict.FAILURE
    assert verdict(InvalidRequest("bad")) is Verdict.NEUTRAL
    assert verdict(UpstreamError(code="upstream_model_not_found")) is Verdict.NEUTRAL


def test_threshold_opens_then_one_probe_closes() -> None:
    health, clock, recorder = make()
    ch = channel()
    fail(health, ch)
    fail(health, ch)
    assert health.admit(ch, M) == ADMITTED, "two failures are below the threshold of three"
    fail(health, ch)
    assert health.admit(ch, M) == REFUSED
    assert health.admit(ch, "model-b") == ADMITTED, "circuits are per model"
    assert recorder.cooldowns[-1][1] is not None
    clock.now += 9.9
    assert health.admit(ch, M) == REFUSED
    clock.now += 0.2
    assert health.admit(ch, M) == PROBE
    assert health.admit(ch, M) == REFUSED, "only one probe at a time"
    health.succeeded(ch, M, PROBE, POLICY)
    assert health.admit(ch, M) == ADMITTED
    assert recorder.cooldowns[-1] == (1, None)


def test_a_success_resets_the_count() -> None:
    health, _, _ = make()
    ch = channel()
    fail(health, ch)
    fail(health, ch)
    health.succeeded(ch, M, ADMITTED, POLICY)
    fail(health, ch)
    fail(health, ch)
    assert health.admit(ch, M) == ADMITTED


def test_failed_probe_doubles_the_cooldown_up_to_the_cap() -> None:
    health, clock, _ = make()
    ch = channel()
    policy = replace(POLICY, failure_threshold=1, cooldown_seconds=10, max_cooldown_seconds=35)
    fail(health, ch, policy=policy)
    waits = []
    for _ in range(3):
        start = clock.now
        while health.admit(ch, M) == REFUSED:
            clock.now += 0.5
        waits.append(round(clock.now - start))
        health.failed(ch, M, PROBE, UpstreamError(), policy)
    assert waits == [10, 20, 35]  # 10, then doubled, then 40 capped at 35


def test_in_flight_failures_do_not_extend_the_cooldown_nor_count_as_probes() -> None:
    health, clock, recorder = make()
    ch = channel()
    in_flight = [health.admit(ch, M) for _ in range(50)]  # a crowd admitted while the circuit was closed
    for admission in in_flight:
        health.failed(ch, M, admission, UpstreamError(), POLICY)
    opened = [c for c in recorder.cooldowns if c[1] is not None]
    assert len(opened) == 1, "the stragglers re-opened the circuit"
    clock.now += 10.01
    assert health.admit(ch, M) == PROBE


def test_stale_success_does_not_close_an_open_circuit() -> None:
    health, _, _ = make()
    ch = channel()
    early = health.admit(ch, M)
    for _ in range(3):
        fail(health, ch)
    health.succeeded(ch, M, early, POLICY)
    assert health.admit(ch, M) == REFUSED


def test_retry_after_is_honoured_and_capped() -> None:
    health, clock, _ = make()
    ch = channel()
    limited = RateLimited(headers={"Retry-After": "60"})
    policy = replace(POLICY, failure_threshold=1)
    fail(health, ch, limited, policy)
    clock.now += 59
    assert health.admit(ch, M) == REFUSED
    clock.now += 1.01
    assert health.admit(ch, M) == PROBE
    health2, clock2, _ = make()
    fail(health2, ch, RateLimited(headers={"Retry-After": "3600"}), replace(policy, max_cooldown_seconds=120))
    clock2.now += 120.01
    assert health2.admit(ch, M) == PROBE


def test_refusal_error_tells_the_client_when_to_retry() -> None:
    health, clock, _ = make()
    ch = channel()
    policy = replace(POLICY, failure_threshold=1)
    fail(health, ch, RateLimited(headers={"Retry-After": "30"}), policy)
    clock.now += 10.2
    error = health.refusal([ch], M)
    assert isinstance(error, RateLimited) and error.headers["Retry-After"] == "20"
    fail(health, channel(2), UpstreamError(), policy)
    error = health.refusal([channel(2)], M)
    assert error.status == 503 and error.code == "upstream_cooling_down"
    assert error.headers["Retry-After"] == "10"


def test_refused_credentials_disable_after_three_in_a_row() -> None:
    health, _, recorder = make()
    ch = channel()
    refused = UpstreamError(code="upstream_auth_failed")
    fail(health, ch, refused)
    fail(health, ch, refused)
    health.succeeded(ch, M, ADMITTED, POLICY)  # a success in between starts the count again
    for _ in range(3):
        fail(health, ch, refused)
    assert health.admit(ch, M) == REFUSED
    assert health.admit(ch, "model-b") == REFUSED, "a disabled channel serves no model"
    assert recorder.disabled == [
        (1, "auto: the upstream refused the channel's credentials (upstream_auth_failed, 3 times in a row)")
    ]
    # the operator re-enables it: the reloaded snapshot holds a new Channel object
    assert health.admit(channel(), M) == ADMITTED


def test_auto_disable_off_cools_down_instead() -> None:
    health, _, recorder = make()
    ch = channel()
    policy = replace(POLICY, auto_disable=False)
    for _ in range(3):
        fail(health, ch, UpstreamError(code="upstream_quota"), policy)
    assert recorder.disabled == []
    assert health.admit(ch, M) == REFUSED


def test_neutral_outcomes_leave_the_circuit_alone_and_free_the_probe() -> None:
    health, clock, recorder = make()
    ch = channel()
    policy = replace(POLICY, failure_threshold=1)
    fail(health, ch, policy=policy)
    clock.now += 10.01
    probe = health.admit(ch, M)
    assert probe == PROBE
    health.failed(ch, M, probe, InvalidRequest("the client's own fault"), policy)
    assert health.admit(ch, M) == PROBE, "the probe slot was not released"
    health.release(ch, M, PROBE)
    assert health.admit(ch, M) == PROBE
    assert len(recorder.errors) == 1


def test_policy_from_channel_config() -> None:
    settings = Settings(_env_file=None, upstream_first_byte_timeout=300, upstream_idle_timeout=300)
    default = build(channel(), settings)
    assert default.client_timeout is None and default.first_byte_guard is None and not default.custom_total
    custom = build(
        channel(
            first_byte_timeout=2, idle_timeout=30, total_timeout=60, failure_threshold=5, auto_disable=False
        ),
        settings,
    )
    assert custom.first_byte_guard == 2 and custom.custom_total and not custom.auto_disable
    assert custom.client_timeout is not None and custom.client_timeout.sock_read == 30
    assert custom.failure_threshold == 5


@pytest.mark.parametrize("value", ["soon", -1, 0, True, 2.5])
def test_bad_config_values_fall_back_to_defaults(value: object) -> None:
    policy = build(channel(failure_threshold=value), Settings(_env_file=None))
    assert policy.failure_threshold == 3
