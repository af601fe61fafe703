"""Entry point of the `asrkit` command: one file per command or command group."""

import os
import sys

import typer
from typer._click import exceptions as parse_errors  # the click that typer vendors

from asrkit import __version__

from . import (align, calibrate, data, detection, embedder, evaluate, export, index, lm, models,
               search, serve, synth, train, transcribe)

app = typer.Typer(help="asrkit: CTC speech recognition and query-by-example audio search.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.command()(train.train)
app.command()(transcribe.transcribe)
app.command()(evaluate.evaluate)
app.command()(calibrate.calibrate)
app.command()(align.align)
app.command()(models.models)
app.add_typer(data.app, name="data")
data.app.command("synth")(synth.synth)
data.app.command("synth-archive")(synth.synth_archive)
app.add_typer(lm.app, name="lm")
app.add_typer(embedder.app, name="embedder")
app.add_typer(index.app, name="index")
app.command()(export.export)
app.command()(serve.serve)
app.add_typer(search.app, name="search")
search.app.command("eval")(detection.evaluate)  # without --index: `asrkit embedder eval`
search.app.command("calibrate")(detection.calibrate)


def _version(value: bool):
    if value:
        typer.echo(f"asrkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")):
    """asrkit: CTC speech recognition and query-by-example audio search."""


def main():
    # Idle OpenMP threads sleep instead of spinning: with another busy process on the
    # cores, spinning threads made a 3 s transcription take 13 s instead of 0.5 s.
    # Set before torch loads; OMP_WAIT_POLICY=ACTIVE in the environment still wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = app(prog_name="asrkit", standalone_mode=False)
    except parse_errors.NoArgsIsHelpError as e:  # `asrkit data`: the group's help
        typer.echo(e.ctx.get_help() if e.ctx else e.format_message(), err=True)
        sys.exit(e.exit_code)
    except parse_errors.UsageError as e:  # a wrong type, a missing argument, an unknown option
        hint = f"; see '{e.ctx.command_path} -h'" if e.ctx else ""
        typer.echo(f"error: {e.format_message().rstrip('.')}{hint}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
