"""The `llmrca` command line: a thin face over the package.

Each command group lives in its own module with ``add_parser(subparsers)``; the function it sets as
``func`` takes the parsed arguments and returns an exit code. Exit codes: 0 ok, 1 failure (an
:class:`~llmrca.errors.LlmrcaError`, printed without a traceback), 2 bad usage (argparse, or an
:class:`~llmrca.errors.InvalidArgumentError` such as a negative temperature).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from llmrca import __version__
from llmrca.errors import InvalidArgumentError, LlmrcaError, StoreInterruptedError

#: Modules under llmrca.cli that contribute commands, in --help order.
COMMAND_MODULES = ["store_cmds", "interaction_cmds", "ingest_cmds", "model_cmds", "zoo_cmds",
                   "replay_cmds", "attribute_cmds", "judge_cmds", "internals_cmds", "data_cmds",
                   "investigate_cmds", "verify_cmds", "run_cmds", "demo_cmds"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrca", description="Offline workbench for LLM safety incident root-cause analysis.")
    parser.add_argument("--version", action="version", version=f"llmrca {__version__}")
    parser.add_argument("--db", help="store file (default: $LLMRCA_DB or ./.llmrca/llmrca.duckdb)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(f"llmrca.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"llmrca.cli.{name}":
                continue  # a command group that is not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InvalidArgumentError as exc:  # a value argparse could not check: still bad usage
        _error(f"llmrca: error: {exc}")
        return 2
    except StoreInterruptedError as exc:
        _error(f"llmrca: {exc}")
        return 130
    except LlmrcaError as exc:
        _error(f"llmrca: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _error("llmrca: interrupted; a command that writes commits all its work or none of it "
               "(check with `llmrca incidents show` or `llmrca init`)")
        return 130
    except BrokenPipeError:
        # The reader went away (`llmrca ... | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        text = " ".join(str(exc).split())
        _error(f"llmrca: internal error: {type(exc).__name__}: {text[:300]} "
               "(run again with --debug for the traceback)")
        return 1


def _error(message: str) -> None:
    """An error on one line of its own, even after a progress bar or a half-written line
    (messages quoting DuckDB or a library can span lines: they are joined)."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass
    print(" ".join(message.split()), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
