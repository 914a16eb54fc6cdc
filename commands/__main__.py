"""`python -m commands NAME ARGS...` runs the command ebm-NAME: how --detach starts a run in the
background, and how the tests run each command in a fresh interpreter."""

import sys

from .cli import COMMANDS

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    print(f"usage: python -m commands {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
    sys.exit(2)
sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
