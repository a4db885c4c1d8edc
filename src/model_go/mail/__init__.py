"""Outgoing mail: an outbox table filled by requests, drained by a supervised sender over SMTP."""
