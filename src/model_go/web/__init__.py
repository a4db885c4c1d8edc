"""The web dashboard: server-rendered page shells, local static assets, and their security headers."""

from model_go.web.pages import mount_dashboard

__all__ = ["mount_dashboard"]
