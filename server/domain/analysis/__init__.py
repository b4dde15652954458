"""Deterministic analysis of cached insight results and follow-up suggestions (issue 16)."""
