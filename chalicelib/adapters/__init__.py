"""Adapters: AWS implementations of the ports, and in-memory ones for tests and local reasoning."""
