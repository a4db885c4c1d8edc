"""Ledger entry kinds, and the reference each one carries so no entry is ever applied twice.

    kind         sign  reference
    topup        +     Stripe payment intent id
    usage        -     request id (the usage row's)
    adjustment   +/-   admin action id ("admin:<uuid>")
    refund       -     Stripe charge id + cumulative amount refunded, or an admin action id
    redemption   +     "<code id>:<user id>"
    dispute      -     Stripe dispute id

UNIQUE (kind, reference) on the ledger enforces it. Rows are never updated or deleted.
"""

from __future__ import annotations

from typing import Final

TOPUP: Final = "topup"
USAGE: Final = "usage"
ADJUSTMENT: Final = "adjustment"
REFUND: Final = "refund"
REDEMPTION: Final = "redemption"
DISPUTE: Final = "dispute"

KINDS: Final = frozenset({TOPUP, USAGE, ADJUSTMENT, REFUND, REDEMPTION, DISPUTE})

# Kinds written before migration 0004, which renames the rows that existed then.
LEGACY: Final = {"debit": USAGE, "credit": ADJUSTMENT, "adjust": ADJUSTMENT}


def canonical(kind: str) -> str:
    """The current name of a kind, old or new."""
    return LEGACY.get(kind, kind)
