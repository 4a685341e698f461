"""`python -m relay` runs the relaysim command line."""

from relay.cli import main

main()
