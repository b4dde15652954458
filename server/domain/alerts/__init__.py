"""Alert evaluation: conditions, anomaly detectors and the check schedule (pure functions)."""
