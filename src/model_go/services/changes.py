"""Partial updates as the CLI, the API and the dashboard send them: a field left UNSET stays as it
is, None removes the value, anything else sets it."""

from __future__ import annotations


class Unset:
    """A field the caller did not mention: left as it is (None clears it)."""


UNSET = Unset()


class Change:
    """Base of a frozen dataclass of fields that may be UNSET."""

    @property
    def empty(self) -> bool:
        """True when the caller mentioned no field at all."""
        return all(isinstance(value, Unset) for value in vars(self).values())
