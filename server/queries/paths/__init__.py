"""Paths: the most common sequences of pages, screens or events within a session."""
