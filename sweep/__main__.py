"""``python -m sweep``: the sweep runner's command line (``sweep.local.cli``; docs/cluster.md)."""
import sys

from sweep.local import cli

if __name__ == "__main__":
    sys.exit(cli())
