"""The model: the relay tier as plain Python, handed `now` and events (sans-IO)."""
