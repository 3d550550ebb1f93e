"""Sub-commands of the icontorch command line, one module each (see icontorch.cli)."""
