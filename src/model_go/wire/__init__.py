"""Wire formats: parsing and validating what clients send, and SSE framing."""
