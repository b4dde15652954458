"""Retention: the share of a cohort of actors that comes back in later periods."""
