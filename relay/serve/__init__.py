"""Serve mode: the tier on loopback, its wire protocol, load client, admin, metrics."""
