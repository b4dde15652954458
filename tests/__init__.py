"""The test suites: unit, integration, contract, and their shared support code."""
