"""`python -m tracer` runs the `pathtrace` command line."""

from tracer.cli import main

main()
