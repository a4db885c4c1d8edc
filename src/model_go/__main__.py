"""Allows `python -m model_go`."""

from model_go.cli import main

main()
