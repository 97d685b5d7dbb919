"""``python -m hpc_fedprune``: parse arguments and call the command (see cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
