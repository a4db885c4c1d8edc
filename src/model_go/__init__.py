"""model-go: one OpenAI-compatible API, one key and one prepaid balance in front of many upstreams."""

__version__ = "0.1.0"
