"""The command's entry point. Ctrl-C or SIGTERM while the command is still loading (numpy,
OpenCV and the rest: a fraction of a second) end it as they end a running command, with
one line and exit 130 or 143, not a traceback. classify, undo and train then set their own
handling; the others (evaluate, corrections) keep this one to the end."""

import signal
import sys


def _stopped_while_loading(signum: int, frame) -> None:
    print(f"stopped by {signal.Signals(signum).name}", file=sys.stderr)
    sys.exit(128 + signum)


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stopped_while_loading)
    from flowersort.cli.app import main as run_command

    run_command()
