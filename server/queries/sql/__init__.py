"""SQL insights: a caller's own SELECT, checked, rewritten to the caller's environment and run."""
