"""Integration tests: a real server on a loopback port, called through the generated stubs."""
