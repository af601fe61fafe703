"""What every command shares: error reporting, logging and progress bars."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from asrkit.errors import AsrkitError


RootOpt = Annotated[Optional[Path], typer.Option(
    "--root", exists=True, file_okay=False,
    help="Refuse manifests naming audio outside this folder (symlinks and '..' resolved).")]


def number_check(low: float = -math.inf, high: float = math.inf, *, above: bool = False,
                 what: str = "a number"):
    """A Typer callback that refuses, at parse time, a value outside ``low..high`` (or
    ``> low`` with ``above``), NaN or infinity: one ``error:`` line and exit 2 (usage),
    before any model or file is loaded. List-valued options are checked item by item."""
    opening = "above" if above else "at least"
    allowed = (f"{opening} {low:g}" if math.isinf(high) else
               f"at most {high:g}" if math.isinf(low) else f"between {low:g} and {high:g}")

    def check(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is None or ctx.resilient_parsing:
            return value
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if not (math.isfinite(v) and (v > low if above else v >= low) and v <= high):
                name = max(param.opts, key=len) if param.opts else param.name
                typer.echo(f"error: {name} {v}: expected {what} ({allowed})", err=True)
                raise typer.Exit(2)
        return value
    return check


# The shared numeric checks; every numeric option of every command uses one of them.
POSITIVE = number_check(0, above=True, what="a positive number")
POSITIVE_INT = number_check(1, what="a positive whole number")
NON_NEGATIVE = number_check(0, what="a non-negative number")
NON_NEGATIVE_INT = number_check(0, what="a non-negative whole number")
FINITE = number_check(what="a finite number")
FRACTION = number_check(0, 1, what="a fraction")
COSINE = number_check(-1, 1, what="a cosine similarity")
PORT = number_check(1, 65535, what="a TCP port")
UPLOAD_MB = number_check(0.01, what="a size in MB")
NGRAM_ORDER = number_check(1, 9, what="an n-gram order")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn asrkit errors into one line on stderr and a non-zero exit, no traceback."""
    try:
        yield
    except AsrkitError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
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
