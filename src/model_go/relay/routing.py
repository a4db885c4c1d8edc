"""Order a model's candidate channels: highest priority tier first, weighted random inside a tier."""

from __future__ import annotations

import random
from collections.abc import Sequence

from model_go.providers.base import Channel


def candidates(channels: Sequence[Channel], rng: random.Random | None = None) -> list[Channel]:
    if len(channels) == 1:
        return [channels[0]]
    draw = (rng or random).random
    # Efraimidis-Spirakis weighted shuffle: key u^(1/w), larger first; within a tier the first
    # channel is chosen with probability weight / sum(weights).
    keyed = [(-c.priority, -(draw() ** (1.0 / max(c.weight, 1))), i, c) for i, c in enumerate(channels)]
    keyed.sort()
    return [c for *_, c in keyed]
