"""What an operator sees of a running server: structured log lines (logs.py), Prometheus metrics
(metrics.py), and the request id every response carries (request_ids.py). Never a key, a user name,
a prompt or a reply in any of them."""
