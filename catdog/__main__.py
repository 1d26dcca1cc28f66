"""`python -m catdog` and the `catdog` console script: the command line, with Ctrl-C while it
starts up ending it quietly (exit 130).

The console script is `from catdog.__main__ import run; run()`: what it imports before `run`
starts is only this package's light `__init__`, so the import of the CLI itself (typer, then
torch in a command) happens inside the guard.
"""

import sys


def run() -> None:
    try:
        from catdog.cli import main
    except KeyboardInterrupt:
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
