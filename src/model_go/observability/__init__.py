"""What an operator sees of a running server: structured log lines (logs.py), Prometheus metrics
(metrics.py), and the request id every response carries (request_ids.py). Never a key, a user name,
a prompt or a reply in any of them. Nothing here sends data anywhere (the privacy policy promises
no telemetry): logs go to stderr and metrics wait for the operator's own scraper to read them.
"""
