"""Lifecycle: per period, the actors who are new, returning, resurrecting or went dormant."""
