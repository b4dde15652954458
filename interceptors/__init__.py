"""Server interceptors: request logging, error mapping and API-key authentication."""
