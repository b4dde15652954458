"""The command line: serve, migrate, keys, organizations, environments, events load, demo, query convert."""
