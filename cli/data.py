"""`asrkit data ...`: prepare, import and check data.

Subcommands: ``validate``, ``import kaldi``, ``import folder``, ``prepare an4``,
``prepare librispeech``, ``prepare commonvoice``, ``prepare speechocean762``.
Commands written elsewhere join this group where the top-level app is assembled, e.g.
``data.app.command("synth")(synth.synth)``; this file imports none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ProgressBars, RootOpt, user_errors
from .common import NON_NEGATIVE_INT  # parse-time range checks

app = typer.Typer(help="Prepare, import and check data.", no_args_is_help=True)
import_app = typer.Typer(help="Convert another corpus layout into a manifest.",
                         no_args_is_help=True)
prepare_app = typer.Typer(help="Download and prepare a standard corpus.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(prepare_app, name="prepare")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (JSON Lines).")]


@app.command()
def validate(
    manifest: Annotated[Path, typer.Argument(help="JSON Lines manifest to check.")],
    model: Annotated[Optional[str], typer.Option(
        help="Check transcripts against this model's vocabulary and frame rate "
             "(model file, training folder or bundled name).")] = None,
    case: Annotated[str, typer.Option(
        help="Case policy for the character inventory without --model: upper, lower, keep."
    )] = "upper",
    headers_only: Annotated[bool, typer.Option(
        "--headers-only", help="Read only audio headers (fast; misses truncated files "
                               "and NaN samples).")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    limit: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="List at most this many problems and "
                                            "warnings each (--json lists all).")] = 50,
    as_json: JsonOpt = False,
    root: RootOpt = None,
):
    """Check a manifest: audio readable, durations, sample rates, characters, CTC lengths.

    Exits with 1 when a problem is found (with --strict, also on warnings).
    """
    with user_errors():
        from asrkit.asr.validation import validate_manifest
        if case not in ("upper", "lower", "keep"):
            raise typer.BadParameter("choose upper, lower or keep", param_hint="--case")
        asr = None
        if model is not None:
            from asrkit.asr.checkpoint import load_model
            asr = load_model(model)
        with ProgressBars("checking", "utt") as bars:  # none if the manifest is unreadable
            report = validate_manifest(manifest, asr, case=case, read_samples=not headers_only,
                                       progress=bars.count, root=root)
        typer.echo(report.to_json() if as_json else _summary(report, limit))
        if report.problems or (strict and report.warnings):
            raise typer.Exit(1)


@import_app.command("kaldi")
def import_kaldi(
    data_dir: Annotated[Path, typer.Argument(
        help="Kaldi data folder: wav.scp, text, optional segments and utt2spk.")],
    out: OutOpt,
    as_json: JsonOpt = False,
):
    """Convert a Kaldi data directory into a manifest (piped wav.scp entries are refused)."""
    with user_errors():
        from asrkit.manifest import import_kaldi as read_kaldi
        _write_and_report(read_kaldi(data_dir), out, as_json)


@import_app.command("folder")
def import_folder(
    folder: Annotated[Path, typer.Argument(
        help="Folder of audio files, each with its transcript beside it (a/b.wav + a/b.txt).")],
    out: OutOpt,
    allow_missing_text: Annotated[bool, typer.Option(
        "--allow-missing-text", help="Keep audio without a .txt (for transcription only).")]
        = False,
    as_json: JsonOpt = False,
):
    """Turn a folder of audio files and .txt transcripts into a manifest."""
    with user_errors():
        from asrkit.manifest import import_folder as read_folder
        _write_and_report(read_folder(folder, require_text=not allow_missing_text), out,
                          as_json)


@prepare_app.command("an4")
def prepare_an4(
    data_dir: Annotated[Path, typer.Option(
        help="AN4 corpus folder (holding etc/ and wav/); the download goes here.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for train.jsonl, valid.jsonl and test.jsonl.")],
    download: Annotated[bool, typer.Option(
        help="Fetch the corpus into --data-dir first (needs git and internet; skipped if "
             "it is already there).")] = False,
    valid_speakers: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT,
        help="Training speakers held out whole for validation.")] = 6,
    seed: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="Chooses the validation speakers.")] = 0,
    as_json: JsonOpt = False,
):
    """Write AN4 train/valid/test manifests (safe to re-run)."""
    with user_errors():
        from asrkit.corpora.an4 import download_an4
        from asrkit.corpora.an4 import prepare_an4 as prepare
        if download:
            download_an4(data_dir)
        paths = prepare(data_dir, out, valid_speakers=valid_speakers, seed=seed)
        _report_splits(data_dir, paths, as_json)


@prepare_app.command("speechocean762")
def prepare_speechocean762(
    data_dir: Annotated[Path, typer.Option(
        help="speechocean762 folder (holding train/ and test/), or the folder holding it; "
             "the download goes here.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for train.jsonl, valid.jsonl and test.jsonl.")],
    download: Annotated[bool, typer.Option(
        help="Fetch speechocean762.tar.gz (about 520 MB) from openslr.org/101 first and "
             "check its MD5 (skipped if the corpus is already there).")] = False,
    mirror: Annotated[Optional[str], typer.Option(
        help="Base URL of an openslr mirror [default: https://www.openslr.org/resources/101].")]
        = None,
    md5: Annotated[Optional[str], typer.Option(
        help="Expected MD5 of the archive (openslr.org/101 publishes none; without it the "
             "first download's digest is recorded and later ones must match).")] = None,
    valid_speakers: Annotated[int, typer.Option(
        callback=NON_NEGATIVE_INT,
        help="Training speakers held out whole for validation.")] = 10,
    seed: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="Chooses the validation speakers.")] = 0,
    as_json: JsonOpt = False,
):
    """Write speechocean762 train/valid/test manifests (safe to re-run)."""
    with user_errors():
        from asrkit.corpora import speechocean762 as so
        corpus = data_dir
        if download:
            with _download_bars() as bars:
                corpus = so.download_speechocean762(data_dir, mirror or so.URL, md5,
                                                    progress=bars.update)
        paths = so.prepare_speechocean762(corpus, out, valid_speakers=valid_speakers,
                                          seed=seed)
        _report_splits(corpus, paths, as_json)


def _download_bars() -> ProgressBars:
    """A bar per archive and stage: bytes fetched or checked, then files extracted."""
    return ProgressBars(label=lambda p: f"{p.stage} {p.archive}",
                        unit=lambda p: "file" if p.stage == "extract" else "B")


@prepare_app.command("librispeech")
def prepare_librispeech(
    data_dir: Annotated[Path, typer.Option(
        help="Folder holding LibriSpeech/ (or that folder itself); the download goes here.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for one <part>.jsonl per part.")],
    part: Annotated[Optional[list[str]], typer.Option(
        "--part", help="Part to prepare (repeatable): dev-clean, dev-other, test-clean, "
                       "test-other, train-clean-100, train-clean-360, train-other-500. "
                       "Default: all but the last two (the 100-hour setup).")] = None,
    download: Annotated[bool, typer.Option(
        help="Fetch missing parts from openslr.org first and check their MD5 sums "
             "(train-clean-100 alone is 6.3 GB; skipped for parts already there).")] = False,
    mirror: Annotated[Optional[str], typer.Option(
        help="Base URL of an openslr mirror [default: https://www.openslr.org/resources/12].")]
        = None,
    as_json: JsonOpt = False,
):
    """Write LibriSpeech manifests, one per part (safe to re-run)."""
    with user_errors():
        from asrkit.corpora import librispeech
        parts = tuple(part) if part else librispeech.DEFAULT_PARTS
        if download:
            with _download_bars() as bars:
                librispeech.download_librispeech(data_dir, parts, mirror or librispeech.URL,
                                                 progress=bars.update)
        paths = librispeech.prepare_librispeech(data_dir, out, parts)
        _report_splits(data_dir, paths, as_json)


@prepare_app.command("commonvoice")
def prepare_commonvoice(
    data_dir: Annotated[Path, typer.Option(
        help="Extracted Common Voice release: a language folder (with train.tsv and "
             "clips/), or the release folder together with --language.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for one <split>.jsonl per split.")],
    language: Annotated[Optional[str], typer.Option(
        help="Language folder to use inside a release folder, e.g. en.")] = None,
    split: Annotated[Optional[list[str]], typer.Option(
        "--split", help="Split to prepare (repeatable): train, dev, test, validated, other, "
                        "invalidated. Default: train, dev and test.")] = None,
    normalize: Annotated[str, typer.Option(
        help="keep: sentences as written; upper: upper case with punctuation removed "
             "except apostrophes (for character models).")] = "keep",
    download: Annotated[bool, typer.Option(
        help="Common Voice has no open download: this says where to get it.")] = False,
    as_json: JsonOpt = False,
):
    """Write Common Voice manifests, one per split (safe to re-run)."""
    with user_errors():
        from asrkit.corpora import commonvoice
        if download:
            commonvoice.download_commonvoice(data_dir, language)
        paths = commonvoice.prepare_commonvoice(
            data_dir, out, tuple(split) if split else commonvoice.DEFAULT_SPLITS,
            language=language, normalize=normalize)
        _report_splits(data_dir, paths, as_json)


def _report_splits(corpus: Path, paths: dict[str, Path], as_json: bool) -> None:
    """Utterance and speaker counts of freshly written manifests."""
    from asrkit.manifest import read_manifest
    splits = {}
    for name, path in paths.items():
        utts = read_manifest(path)
        splits[name] = {"manifest": str(path), "utterances": len(utts),
                        "speakers": len({u.speaker for u in utts})}
    if as_json:
        typer.echo(json.dumps({"corpus": str(corpus), "splits": splits}, indent=2))
        return
    width = max(map(len, splits))
    for name, s in splits.items():
        typer.echo(f"{name:{width}s} {s['utterances']:7d} utterances {s['speakers']:5d} "
                   f"speakers → {s['manifest']}")
    typer.echo(f"next: asrkit data validate {next(iter(paths.values()))}")


def _write_and_report(utts, out: Path, as_json: bool) -> None:
    from asrkit.manifest import write_manifest
    n = write_manifest(out, utts)
    summary = {"manifest": str(out), "utterances": n,
               "with_text": sum(u.text is not None for u in utts),
               "speakers": len({u.speaker for u in utts if u.speaker is not None})}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{n} utterances ({summary['with_text']} with transcripts, "
               f"{summary['speakers']} speakers) → {out}")


def _summary(report, limit: int) -> str:
    """The human-readable validation report."""
    lines = [f"{report.manifest}: {report.utterances} utterances on {report.lines} lines, "
             f"{report.audio_files} audio files"]
    d = report.durations
    if d is not None:
        lines.append(f"  duration      {d.total_hours:.3f} h in {d.count} utterances; min "
                     f"{d.min:.2f} s, median {d.median:.2f} s, max {d.max:.2f} s")
    if report.sample_rates:
        lines.append("  sample rates  " + ", ".join(f"{rate} Hz ({n})"
                                                   for rate, n in report.sample_rates))
    chars = "".join(c for c, _ in sorted(report.characters))
    lines.append(f"  characters    {len(report.characters)}: {chars!r}")
    if report.vocabulary is not None:
        lines.append(f"  vocabulary    the model's {len(report.vocabulary)} symbols")
    lines.append(f"  CTC lengths   checked at subsample {report.subsample}")
    for title, issues in (("problem", report.problems), ("warning", report.warnings)):
        if issues:
            lines.append(f"{len(issues)} {title}{'s' if len(issues) > 1 else ''}:")
            lines += [_issue(i) for i in issues[:limit]]
            if len(issues) > limit:
                lines.append(f"  ... and {len(issues) - limit} more (--json lists all)")
    lines.append("OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return "\n".join(lines)


def _issue(issue) -> str:
    who = f" [{issue.id}]" if issue.id is not None else ""
    return f"  {issue.location}{who}: {issue.problem}\n      fix: {issue.fix}"
