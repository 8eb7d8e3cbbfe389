"""`python -m labbuilder.cli`: the same as the `labbuilder` command."""

from labbuilder.cli import main

main()
