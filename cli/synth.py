"""`asrkit data synth` and `asrkit data synth-archive`: synthetic English speech.

Both are plain command functions; the `data` group registers them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from asrkit.errors import ConfigError

from .common import ProgressBars, user_errors
from .common import FINITE, FRACTION, NON_NEGATIVE_INT, POSITIVE_INT  # parse-time range checks


def synth(
    out: Annotated[Optional[Path], typer.Argument(
        help="Output folder (manifests, wav/, synth.json). Re-running resumes.")] = None,
    texts: Annotated[str, typer.Option(
        help="Built-in text set: mixed (AN4-like), digits, letters, commands.")] = "mixed",
    words: Annotated[Optional[Path], typer.Option(
        help="Word list (one per line); utterances are random strings of its words.")] = None,
    sentences: Annotated[Optional[Path], typer.Option(
        help="Sentence file (one utterance per line), instead of word strings.")] = None,
    utterances: Annotated[int, typer.Option("--utterances", "-n", callback=POSITIVE_INT,
                                            help="Utterances in all splits together.")] = 2400,
    min_words: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Fewest words per utterance.")] = 1,
    max_words: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Most words per utterance.")] = 4,
    voices: Annotated[Optional[str], typer.Option(
        help="Comma-separated voice-id globs, e.g. 'espeak-ng:en-gb*,flite'. "
             "Default: every installed voice. See --list-voices.")] = None,
    valid_fraction: Annotated[float, typer.Option(callback=FRACTION,
        help="Share of utterances (and of speakers) held out for validation.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(callback=FRACTION,
        help="Share of utterances (and of speakers) held out for testing.")] = 0.1,
    snr: Annotated[str, typer.Option(
        help="Comma-separated SNRs in dB to draw from; 'clean' = no noise at all.")]
        = "40,30,20,15,10",
    reverb: Annotated[float, typer.Option(callback=FRACTION,
        help="Probability that an utterance is put in a synthetic room.")] = 0.3,
    vocal_tract: Annotated[str, typer.Option(
        help="LOW,HIGH: each training utterance's formants and pitch rise by a factor "
             "drawn from this range, at the same tempo, as from a shorter vocal tract "
             "(women's and children's voices from men's); '1,1' = off. Held-out voices "
             "are never shifted.")] = "1.0,1.3",
    seed: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="Same seed, same corpus, byte for byte.")] = 0,
    workers: Annotated[Optional[int], typer.Option(callback=POSITIVE_INT,
        help="Parallel synthesiser jobs (default: one per CPU).")] = None,
    list_voices: Annotated[bool, typer.Option(
        "--list-voices", help="List the installed voices and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Generate a labelled synthetic speech corpus, split by voice into train/valid/test."""
    with user_errors():
        if list_voices:
            _print_voices(as_json)
            return
        if out is None:
            raise ConfigError("give an output folder: asrkit data synth OUT_DIR")
        from asrkit.synth import SynthConfig
        config = SynthConfig(
            n_utterances=utterances, texts=texts,
            words_file=str(words) if words else None,
            sentences_file=str(sentences) if sentences else None,
            min_words=min_words, max_words=max_words, voices=_split_list(voices),
            valid_fraction=valid_fraction, test_fraction=test_fraction,
            snrs=_parse_snrs(snr), reverb_probability=reverb,
            vocal_tract_range=_parse_range("--vocal-tract", vocal_tract), seed=seed)
        _run_corpus(out, config, workers, as_json)


def synth_archive(
    out: Annotated[Path, typer.Argument(help="Output folder (audio/, recordings.jsonl, "
                                             "words.jsonl).")],
    texts: Annotated[str, typer.Option(
        help="Built-in word set: digits, letters, commands.")] = "commands",
    words: Annotated[Optional[Path], typer.Option(
        help="Word list (one per line), instead of a built-in set.")] = None,
    files: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Number of long recordings.")] = 4,
    words_per_file: Annotated[int, typer.Option(callback=POSITIVE_INT, help="Words in each recording.")] = 20,
    voices: Annotated[Optional[str], typer.Option(
        help="Comma-separated voice-id globs (default: every installed voice).")] = None,
    snr: Annotated[Optional[float], typer.Option(callback=FINITE,
        help="Add white noise over whole recordings at this SNR (dB).")] = None,
    seed: Annotated[int, typer.Option(callback=NON_NEGATIVE_INT, help="Same seed, same archive.")] = 0,
    workers: Annotated[Optional[int], typer.Option(callback=POSITIVE_INT, help="Parallel synthesiser jobs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Build a search archive: long recordings of words with exactly known time spans."""
    with user_errors():
        from asrkit.synth import builtin_words, synth_archive as make_archive, text_source
        from asrkit.synth.texts import WORD_SETS
        if words is None and texts not in WORD_SETS:
            raise ConfigError(f"--texts must be one of {', '.join(WORD_SETS)} for an archive")
        word_list = text_source(words_file=words).items if words else builtin_words(texts)
        start = time.time()
        with ProgressBars(unit="words") as bars:
            spans = make_archive(word_list, files, out, words_per_file=words_per_file,
                                 voices=_split_list(voices) or None, snr=snr, seed=seed,
                                 workers=workers, progress=bars.count)
        summary = {"out": str(out), "files": files, "words": len(spans),
                   "word_manifest": str(out / "words.jsonl"),
                   "recordings": str(out / "recordings.jsonl"),
                   "seconds": round(time.time() - start, 1)}
        typer.echo(json.dumps(summary, indent=2) if as_json else
                   f"{len(spans)} words in {files} recordings → {out / 'words.jsonl'} "
                   f"({summary['seconds']} s)")


def _run_corpus(out: Path, config, workers: Optional[int], as_json: bool) -> None:
    from asrkit.synth import synth_corpus
    start = time.time()
    with ProgressBars(unit="utterances") as bars:
        corpus = synth_corpus(out, config, workers=workers, progress=bars.count)
    elapsed = time.time() - start
    if as_json:
        typer.echo(json.dumps({
            "out": str(out), "seconds_taken": round(elapsed, 1),
            "generated": corpus.generated, "skipped": corpus.skipped,
            "splits": {s: {"manifest": str(corpus.manifests[s]),
                           "utterances": corpus.utterances[s],
                           "minutes": round(corpus.seconds[s] / 60, 2),
                           "speakers": list(corpus.speakers[s]),
                           "voices": len(corpus.voices[s])} for s in corpus.manifests}},
            indent=2))
        return
    typer.echo(f"{corpus.generated} utterances made, {corpus.skipped} already there "
               f"({elapsed:.0f} s)")
    for s, path in corpus.manifests.items():
        typer.echo(f"{s:5s} {corpus.utterances[s]:5d} utts {corpus.seconds[s] / 60:6.1f} min  "
                   f"{path}\n      speakers: {', '.join(corpus.speakers[s])}")


def _print_voices(as_json: bool) -> None:
    from asrkit.synth import ENGINE_PACKAGES, ENGINES, available_engines, list_voices
    voices = list_voices()
    missing = [e for e in ENGINES if e not in available_engines()]
    if as_json:
        typer.echo(json.dumps({"voices": [{"id": v.id, "engine": v.engine, "speaker": v.speaker}
                                          for v in voices],
                               "missing_engines": {e: ENGINE_PACKAGES[e] for e in missing}},
                              indent=2))
        return
    for v in voices:
        typer.echo(f"{v.id:40s} speaker {v.speaker}")
    typer.echo(f"{len(voices)} voices, {len({v.speaker for v in voices})} speakers")
    for e in missing:
        typer.echo(f"{e} is not installed (Debian package {ENGINE_PACKAGES[e]})", err=True)


def _split_list(value: Optional[str]) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def _parse_range(option: str, value: str) -> tuple[float, float]:
    parts = _split_list(value)
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{option}: expected two numbers LOW,HIGH (e.g. 1.0,1.3), "
                          f"got {value!r}") from None
    if not 0 < low <= high:
        raise ConfigError(f"{option}: need 0 < LOW <= HIGH, got {value!r}")
    return low, high


def _parse_snrs(value: str) -> tuple[float | None, ...]:
    snrs = []
    for part in _split_list(value):
        if part.lower() in ("clean", "none", "inf"):
            snrs.append(None)
            continue
        try:
            snrs.append(float(part))
        except ValueError:
            raise ConfigError(f"--snr: {part!r} is not a number of dB or 'clean'") from None
    return tuple(snrs)
