"""`python -m app` is the `twofold` command (app/cli.py)."""

from app.cli import main

main()
