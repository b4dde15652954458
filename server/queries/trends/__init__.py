"""TrendsQuery: checks, SQL, result shaping and labels (the trends runner)."""
