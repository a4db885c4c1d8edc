"""Pure pieces of billing: the amount parser, code normalisation, Stripe signature verification."""

from __future__ import annotations

import time

import pytest

from model_go.billing import codes
from model_go.billing.money import MAX_ENTRY_MICROS, parse_usd
from model_go.billing.payments import SignatureRefused, verify_event
from model_go.errors import InvalidRequest
from model_go.security import KeyRing
from tests.support.mock_stripe import WEBHOOK_SECRET, event, sign


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1", 1_000_000),
        ("12.50", 12_500_000),
        ("0.000001", 1),
        ("1000000", MAX_ENTRY_MICROS),
        ("007.1", 7_100_000),
    ],
)
def test_parse_usd_accepts(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0.0",
        "-1",
        "+1",
        "1e3",
        "1.",
        ".5",
        "1,000",
        " 1",
        "1 ",
        "1.0000001",
        "1000000.000001",
        "\u0661",
        "NaN",
        "Infinity",
        "1..2",
        "0x10",
    ],
)
def test_parse_usd_refuses(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_usd(text, param="amount")
    assert caught.value.param == "amount"


def test_codes_are_random_and_typed_variants_match() -> None:
    ring = KeyRing(b"x" * 48)
    code = codes.new_code()
    assert code.startswith("MGC-") and code != codes.new_code()
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert codes.code_hash(ring, typed) == codes.code_hash(ring, code)
    assert codes.code_hash(ring, code) != ring.hash_api_key(code)


def test_stripe_signatures_are_verified_on_the_raw_bytes() -> None:
    payload = event("checkout.session.completed", {"id": "cs_1", "metadata": {"a": "b"}})
    assert verify_event(payload, sign(payload), WEBHOOK_SECRET)["data"]["object"]["metadata"] == {"a": "b"}
    for body, header, secret in [
        (payload, sign(payload, "whsec_other"), WEBHOOK_SECRET),
        (payload + b" ", sign(payload), WEBHOOK_SECRET),
        (payload, sign(payload, timestamp=int(time.time()) - 301), WEBHOOK_SECRET),
        (payload, None, WEBHOOK_SECRET),
        (payload, sign(payload, ""), ""),
        (b"not json", sign(b"not json"), WEBHOOK_SECRET),
    ]:
        with pytest.raises(SignatureRefused):
            verify_event(body, header, secret)
