"""`python -m openrft.cli …` runs the `openrft` command."""

from openrft.cli import main

main()
