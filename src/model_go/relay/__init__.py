"""The hot path: /v1 routes, the request pipeline and what it needs in memory."""
