"""The execution layer: refresh modes, result cache, shared runs, staleness; knows no query kind."""
