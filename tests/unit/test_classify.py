"""One reading of a failed attempt: the health verdict and whether another channel may be tried."""

from __future__ import annotations

import pytest

from model_go.errors import (
    GatewayError,
    InsufficientBalance,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from model_go.relay.health import Verdict, classify


@pytest.mark.parametrize(
    ("error", "verdict", "retry"),
    [
        (UpstreamError(code="upstream_auth_failed"), Verdict.REFUSAL, True),
        (UpstreamError(code="upstream_quota"), Verdict.REFUSAL, True),
        (UpstreamError(code="upstream_model_not_found"), Verdict.NEUTRAL, True),
        (InvalidRequest("bad", code="upstream_bad_request"), Verdict.NEUTRAL, False),
        (RateLimited("slow down", code="upstream_rate_limited"), Verdict.FAILURE, True),
        (UpstreamUnavailable("down"), Verdict.FAILURE, True),
        (UpstreamTimeout("late"), Verdict.FAILURE, True),
        (UpstreamError("broken"), Verdict.FAILURE, True),
        (InsufficientBalance("poor"), Verdict.NEUTRAL, False),
        (GatewayError(), Verdict.NEUTRAL, False),
    ],
)
def test_classify(error: GatewayError, verdict: Verdict, retry: bool) -> None:
    assert classify(error) == (verdict, retry)
