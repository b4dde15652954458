"""The Insights service: domain, composition root and command line."""
