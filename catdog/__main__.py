"""`python -m catdog`: the command line. Ctrl-C while it starts up ends it quietly (exit 130)."""

import sys

try:
    from catdog.cli import main
except KeyboardInterrupt:
    sys.exit(130)

main()
