"""`python -m app` is the `twofold` command (app/cli/)."""

from app.cli import main

main()
