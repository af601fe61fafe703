"""`python -m asrkit.cli ...` runs the `asrkit` command (e.g. under `torchrun -m`)."""

from .main import main

main()
