"""Storage: the metadata database (SQLAlchemy) and the event store (ClickHouse)."""
