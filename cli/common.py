"""What every command shares: error reporting, logging and progress bars."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from asrkit.errors import AsrkitError, ConfigError, as_user_error

# Exit codes, defined here once for every command.
EXIT_OK = 0
EXIT_ERROR = AsrkitError.exit_code  # 1: failed; the message says what to do
EXIT_CONFIG = ConfigError.exit_code  # 2: an invalid option, setting or config file
EXIT_PARTIAL = 3  # some inputs were skipped (each listed); all the others were done
EXIT_INTERRUPTED = 130  # Ctrl-C; finished outputs are kept

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
ConditionOpt = Annotated[Optional[str], typer.Option(
    "--condition", help="Score under test conditions, comma-separated: clean, 8k, telephone, "
                        "noise<SNR> (pink noise, e.g. noise10), reverb[<RT60>] (e.g. "
                        "reverb0.8). Seeded: every run hears the same audio.")]
PlotOpt = Annotated[Optional[Path], typer.Option(
    "--plot", help="With --condition: bar chart per condition (PNG).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(callback=POSITIVE_INT,
    help="CPU threads for embedding (default: all cores; 1 is faster on a busy machine).")]
NON_NEGATIVE = number_check(0, what="a non-negative number")
NON_NEGATIVE_INT = number_check(0, what="a non-negative whole number")
FINITE = number_check(what="a finite number")
FRACTION = number_check(0, 1, what="a fraction")
COSINE = number_check(-1, 1, what="a cosine similarity")
PORT = number_check(1, 65535, what="a TCP port")
UPLOAD_MB = number_check(0.01, what="a size in MB")
NGRAM_ORDER = number_check(1, 9, what="an n-gram order")


def cosine_or_auto(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]):
    """Parse-time check of a score threshold: a cosine similarity (-1..1) or 'auto'
    (calibrated; see `asrkit search calibrate`)."""
    if value is None or ctx.resilient_parsing:
        return value
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not -1 <= number <= 1:  # NaN fails too
        name = max(param.opts, key=len) if param.opts else param.name
        typer.echo(f"error: {name} {value}: expected a cosine similarity (between -1 and 1) "
                   "or 'auto'", err=True)
        raise typer.Exit(2)
    return value


def print_word_eval(segments, results, as_json: bool, plot: Optional[Path] = None) -> None:
    """The results of `embedder eval` / `search eval` (embeddings vs DTW on isolated
    words), a row per condition and method; ``plot``: same-different AP per condition."""
    if plot is not None:
        from asrkit.plots import plot_conditions
        methods = list(dict.fromkeys(r.method for r in results))
        conditions = list(dict.fromkeys(r.condition for r in results))
        ap = {(r.condition, r.method): r.average_precision for r in results}
        plot_conditions([(c, *(ap[c, m] for m in methods)) for c in conditions], plot,
                        title=f"Same-different AP, {len(segments)} word segments",
                        series=methods, percent=False)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        return
    typer.echo(f"{len(segments)} segments, {results[0].queries} queries, "
               f"{len({s.label for s in segments})} words")
    typer.echo(f"{'condition':12s} {'method':10s} {'AP':>6s} {'MAP':>6s} {'P@10':>6s} "
               f"{'ms/query':>9s}")
    for r in results:
        typer.echo(f"{r.condition:12s} {r.method:10s} {r.average_precision:6.3f} "
                   f"{r.mean_average_precision:6.3f} {r.precision_at_10:6.3f} "
                   f"{1000 * r.query_seconds:9.2f}")


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
        raise typer.Exit(EXIT_INTERRUPTED) from None


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


class ProgressBars:
    """The one adapter from the library's progress reports to tqdm bars.

    Every library progress callback receives a frozen record with ``done`` and ``total``
    (None when unknown). ``label(record)`` (default: its ``stage``, else ``desc``) names
    the bar; a record with another label than the last closes the bar and starts the
    next (an epoch, a download's next archive). The bar is made on the first record, so
    work that fails before it starts shows none. ``postfix(record)`` gives the figures
    shown beside the bar; ``unit`` may depend on the record (bytes are scaled to kB...).
    """

    def __init__(self, desc: str = "", unit: str | Callable[[Any], str] = "it",
                 label: Callable[[Any], str] | None = None,
                 postfix: Callable[[Any], dict] | None = None):
        self.desc, self.unit, self.postfix = desc, unit, postfix
        self.label = label or (lambda p: getattr(p, "stage", self.desc))
        self.stage, self.bar = None, None

    def update(self, p) -> None:
        stage = self.label(p)
        if self.bar is None or stage != self.stage:
            self.close()
            self.stage = stage
            unit = self.unit(p) if callable(self.unit) else self.unit
            self.bar = progress(total=p.total, desc=stage, unit=unit, unit_scale=unit == "B")
        if self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.n = p.done
        if self.postfix is not None:
            self.bar.set_postfix(self.postfix(p), refresh=False)
        self.bar.refresh()  # tqdm still limits how often it redraws

    def count(self, done: int, total: int | None) -> None:
        """For library calls that report ``progress(done, total)`` as two numbers."""
        self.update(_Count(done, total))

    def write(self, line: str) -> None:
        """A line on stdout that does not break the bar."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            typer.echo(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class _Count:
    done: int
    total: int | None


def report_skipped(skipped: list[tuple[str, str]], what: str = "input") -> None:
    """List skipped items at the end of a batch job."""
    if not skipped:
        return
    typer.echo(f"skipped {len(skipped)} {what}(s):", err=True)
    for name, reason in skipped:
        typer.echo(f"  {name}: {reason}", err=True)


def exit_if_partial(skipped: list[tuple[str, str]], what: str = "input") -> None:
    """List skipped items; exit with :data:`EXIT_PARTIAL` if there were any."""
    report_skipped(skipped, what)
    if skipped:
        raise typer.Exit(EXIT_PARTIAL)


def set_threads(threads: Optional[int]) -> None:
    """Limit torch and FAISS to ``threads`` (None: leave their defaults)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {threads}")
    import faiss
    import torch
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
