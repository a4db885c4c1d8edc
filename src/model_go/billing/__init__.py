"""Money, prices and the balance ledger."""
