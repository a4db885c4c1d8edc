"""Accounts: sign-up, sessions, email verification, consent, policy versions and data rights."""
