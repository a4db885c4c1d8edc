"""Usage rows: the batched writer, and later retention and rollups."""
