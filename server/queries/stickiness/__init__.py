"""Stickiness: how many actors were active in exactly 1, 2, ... N intervals of a range."""
