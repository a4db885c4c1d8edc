"""Database tables, engine set-up, repositories and migrations."""
