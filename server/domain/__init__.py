"""The domain: the service's rules (insights, sharing, alerts, accounts, activity, ingest); no gRPC."""
