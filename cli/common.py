"""What every command shares: error reporting, logging and progress bars."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from asrkit.errors import AsrkitError, as_user_error


RootOpt = Annotated[Optional[Path], typer.Option(
    "--root", exists=True, file_okay=False,
    help="Refuse manifests naming audio outside this folder (symlinks and '..' resolved).")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn asrkit errors into one line on stderr and a non-zero exit, no traceback."""
    try:
        yield
    except AsrkitError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except (OSError, UnicodeDecodeError, sqlite3.Error) as e:
        error = as_user_error(e)  # the user's files or disk failed, not asrkit
        if error is None:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; finished outputs are kept", err=True)
        raise typer.Exit(130) from None


def setup_logging(verbose: bool = False) -> None:
    """Library warnings (e.g. excluded utterances) go to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("asrkit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm bar on stderr. Redirected to a log file, it appears only for work that
    lasts over a minute and then updates once a minute, so logs stay short."""
    from tqdm import tqdm
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.1 if interactive else 60.0, delay=0 if interactive else 60.0,
                **kwargs)


class CallbackBar:
    """A progress bar fed by the library's ``progress(done, total)`` callbacks; made on the
    first call, when the total is known (no bar at all if the work fails before it starts)."""

    def __init__(self, unit: str, desc: str = ""):
        self.unit, self.desc, self.bar = unit, desc, None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = progress(total=total, desc=self.desc, unit=self.unit, initial=done)
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def report_skipped(skipped: list[tuple[str, str]], what: str = "input") -> None:
    """List skipped items at the end of a batch job."""
    if not skipped:
        return
    typer.echo(f"skipped {len(skipped)} {what}(s):", err=True)
    for name, reason in skipped:
        typer.echo(f"  {name}: {reason}", err=True)
