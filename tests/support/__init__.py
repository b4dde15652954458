"""Test harness helpers shared by the test suites (throwaway PostgreSQL, ...)."""
