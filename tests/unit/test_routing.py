"""Candidate order: priority tiers first, then a weighted draw inside a tier (seeded, many draws)."""

from __future__ import annotations

import random
from collections import Counter

from model_go.providers.base import Channel
from model_go.relay.routing import candidates


def channel(channel_id: int, priority: int, weight: int) -> Channel:
    return Channel(channel_id, f"c{channel_id}", "openai", "http://x", None, ("m",), {}, priority, weight)


def test_higher_priority_tier_always_comes_first() -> None:
    rng = random.Random(7)
    chans = [channel(1, 0, 100), channel(2, 5, 1), channel(3, 5, 1), channel(4, -1, 50)]
    for _ in range(1000):
        order = [c.id for c in candidates(chans, rng)]
        assert set(order[:2]) == {2, 3} and order[2:] == [1, 4]


def test_first_choice_follows_the_weights() -> None:
    rng = random.Random(11)
    chans = [channel(1, 0, 1), channel(2, 0, 2), channel(3, 0, 7)]
    n = 100_000
    first = Counter(candidates(chans, rng)[0].id for _ in range(n))
    for channel_id, share in ((1, 0.1), (2, 0.2), (3, 0.7)):
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(first[channel_id] - n * share) < 5 * sd, (channel_id, first)
