"""Contract tests: checks on protos/ and generated/ that need no running server."""
