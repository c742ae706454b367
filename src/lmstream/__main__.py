"""`python -m lmstream ...`: the same command as the `lmstream` script, subcommands included."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
