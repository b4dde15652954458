"""`python -m server`: the command line (server/cli/main.py)."""

from server.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
