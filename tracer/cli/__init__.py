"""The command line: one module per command; the only place that prints or picks an exit code.

Exit codes: 0 ok, 1 error, 2 usage, 3 nothing matched, 130 interrupted. Every
`tracer.errors.PathtraceError` is translated here; anything else is a bug and is reported as one
(with the traceback only under --traceback).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from tracer import __version__
from tracer.errors import PathtraceError
from tracer.words import printable

# Command name -> module under tracer.cli. Imported only when the command runs, so that
# `pathtrace packets` never pays for the kubernetes client or scapy.
COMMANDS: dict[str, str] = {
    "analyze": "analyze",
    "packets": "packets",
    "explain": "explain",
    "lab": "lab",
    "demo": "demo",
    "capture": "capture",
    "cleanup": "cleanup",
    "diagnose": "diagnose",
}


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"tracer.cli.{COMMANDS[name]}") is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in COMMANDS if _available(n)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module = importlib.import_module(f"tracer.cli.{COMMANDS[cmd_name]}")
        command: click.Command = module.command
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="pathtrace")
@click.option("--traceback", is_flag=True, hidden=True, help="Show the traceback of a failure.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """Follow ONE request through a Kubernetes cluster at the packet level.

    \b
    Typical use:
      pathtrace analyze RUN                 trace the request in a saved run directory
      pathtrace analyze --point client:c=client.pcap --point node:n1@n1=node.pcap
      pathtrace packets FILE                one line per frame, overlays and SLL2 decoded
      pathtrace demo                        build the namespace lab, run a request, trace it
    """
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback


def say(kind: str, message: str) -> None:
    """`pathtrace: KIND: message` on stderr, with anything from input in it made printable."""
    click.echo(f"pathtrace: {kind}: {printable(message)}", err=True)


def _error(message: str, hint: str | None = None) -> None:
    say("error", message)
    if hint:
        say("hint", hint)


def main(argv: list[str] | None = None) -> Any:
    """Entry point for the `pathtrace` and `kubectl-pathtrace` scripts."""
    args = sys.argv[1:] if argv is None else argv
    show_traceback = "--traceback" in args
    try:
        rv = cli.main(args=args, prog_name="pathtrace", standalone_mode=False)
    except PathtraceError as e:
        if show_traceback:
            raise
        _error(e.message, e.hint)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("pathtrace: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("pathtrace: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else e.exit_code)
    except BrokenPipeError:
        # `pathtrace packets big.pcap | head` is normal use, not an error.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)
