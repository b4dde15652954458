"""Query-node handling: the reference JSON codec and related helpers."""
