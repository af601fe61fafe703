"""Entry point of the `asrkit` command."""

import typer

from asrkit import __version__

app = typer.Typer(help="asrkit: CTC speech recognition and query-by-example audio search.",
                  no_args_is_help=True)


def _version(value: bool):
    if value:
        typer.echo(f"asrkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")):
    """asrkit: CTC speech recognition and query-by-example audio search."""


def main():
    app()
