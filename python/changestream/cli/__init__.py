"""The ``changestream`` command: ``changestream SUBCOMMAND ...`` (also ``python -m changestream``).

Each subcommand is a module of this package with ``register(subparsers)``, which adds its
parser and sets ``func=run``, and ``run(args) -> int``. Exit status: 0 on success, 2 on a
usage error, 1 on a failure (one line on stderr; the traceback too with ``--debug``), 130
after Ctrl-C. Log records at WARNING and above (a broker unreachable, retrying) go to stderr
too, every level with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from changestream._core import ChangeStreamError, __version__
from changestream.cli import capture, follow, lag, tail
from changestream.cli.options import UsageError

SUBCOMMANDS = (tail, lag, capture, follow)

EPILOG = """\
connection settings come from flags or the environment: KAFKA_BOOTSTRAP_SERVERS,
SCHEMA_REGISTRY_URL; --kafka KEY=VALUE and --registry KEY=VALUE pass settings through
(librdkafka's and confluent-kafka's schema registry client's names).
exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="changestream",
        description="Follow a database's change stream from Apache Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"changestream {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on a failure, print the traceback too"
    )
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.register(subparsers)
    # Usage errors found after parsing print the subcommand's usage.
    for name, subparser in subparsers.choices.items():
        subparser.set_defaults(command=name, parser=subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    debug = bool(getattr(args, "debug", False))
    # Warnings (a broker unreachable, retrying) go to stderr; everything with --debug.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="changestream: %(levelname)s: %(message)s",
    )
    try:
        status: int = args.func(args)
    except UsageError as error:
        args.parser.print_usage(sys.stderr)
        print(f"changestream {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`changestream tail ... | head`): not a failure of ours.
        sys.stderr.close()
        return 0
    except (ChangeStreamError, OSError, ImportError) as error:
        if debug:
            traceback.print_exc()
        print(f"changestream: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1
    return status


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__
