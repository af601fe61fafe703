"""Word-time accuracy: how far greedy, beam-search and forced-alignment word times are
from where the words really are, in milliseconds (median and 95th percentile of the
absolute start and end error, and the median signed error, "bias": negative = early).

Two yardsticks:

* **synthetic**: an archive of synthesised words laid out with silence between them
  (asrkit.synth.archive), so every word's span is exact to the sample. By default a
  fresh archive of voices kept out of `recipes/synth` training (``--voices``, or
  ``--voices-from MANIFEST`` for the speakers of a manifest) is made in a temporary
  folder; ``--archive DIR`` scores an existing one. The recogniser
  (``--model``, default the bundled ``an4``) must know the words (AN4's commands);
  ``make demo``'s ``exp/synth/best.pt`` is another choice. Forced alignment is
  scored on every word; the decoders only on the words they got right, and the
  bundled model gets few synthetic words right (README, "Word times").
* **AN4 test** (real speech; skipped with a message when the manifest is absent):
  forced alignment of each reference transcript with the bundled ``an4`` model is
  the yardstick for the decoders' times.

Only words a method got right are scored (pairing: asrkit.metrics.pair_words); each
row says how many. A model trained on short utterances marks the space between words
but not the silence between them, so on the archive its decoders run words together;
``--cut-at-pauses`` decodes each stretch between pauses alone. ``--raw`` scores the times before asrkit's boundary corrections
(``asrkit.decoding.base.WORD_TIMES``), to show what they are worth.

    python bench/word_times.py [--model an4] [--archive DIR | --voices-from MANIFEST]
        [--cut-at-pauses [--detector energy|silero]]
        [--an4 ~/runs/data/an4/test.jsonl] [--limit N] [--raw] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from asrkit.asr.alignment import align_log_probs, text_labels
from asrkit.asr.checkpoint import load_model
from asrkit.asr.transcription import compute_log_probs, decode_pieces, vad_pieces
from asrkit.decoding import make_decoder
from asrkit.decoding.base import RAW_WORD_TIMES, WORD_TIMES
from asrkit.errors import AsrkitError
from asrkit.manifest import read_manifest
from asrkit.metrics import TimedWord, summarize_time_errors, word_time_errors
from asrkit.synth.archive import synth_archive

ROOT = Path(__file__).resolve().parents[1]
# Voices of the generated archive: none heard by the bundled an4 model; the demo model
# was trained on some of these espeak-ng variants (flite's voices are new to it).
HELD_OUT_VOICES = "espeak-ng:en-gb-scotland*,espeak-ng:en-us-nyc*,flite:*"
METHODS = ("greedy", "beam", "align")


def method_words(model, log_probs, text: str, decoders: dict, times, cuts=()) -> dict:
    """Each method's words for one recording: ``log_probs (frames, vocab)``, decoded
    piece by piece from each frame in ``cuts`` (see asrkit.asr.transcription)."""
    out = {}
    for name, decoder in decoders.items():
        hyp = decode_pieces(decoder, log_probs, cuts)
        out[name] = [TimedWord(w.word, w.start, w.end) for w in hyp.words]
    if text:
        try:
            words, _, _ = align_log_probs(log_probs, text_labels(model.vocab, text),
                                          model.vocab, model.frame_seconds, times=times)
            out["align"] = [TimedWord(w.word, w.start, w.end) for w in words]
        except AsrkitError as e:
            print(f"skipped alignment: {e}", file=sys.stderr)
    return out


def make_decoders(model, times) -> dict:
    return {"greedy": make_decoder("greedy", model.vocab, model.frame_seconds, times=times),
            "beam": make_decoder("beam", model.vocab, model.frame_seconds, times=times)}


def synthetic(args, times) -> dict:
    if args.archive:
        return score_archive(args, times, Path(args.archive))
    with tempfile.TemporaryDirectory(prefix="word-times-") as tmp:
        words = (ROOT / "asrkit/synth/words/commands.txt").read_text().split()
        synth_archive(words, args.files, tmp, words_per_file=args.words_per_file,
                      voices=args.voices.split(","), seed=args.seed, workers=1)
        return {**score_archive(args, times, Path(tmp)), "archive": "generated"}


def score_archive(args, times, folder: Path) -> dict:
    truth = defaultdict(list)
    for w in read_manifest(folder / "words.jsonl", root=folder):
        truth[w.id.rsplit("-", 1)[0]].append(TimedWord(w.text, w.offset, w.offset + w.duration))
    model = load_model(args.model)
    decoders = make_decoders(model, times)
    errors = defaultdict(list)
    recordings = read_manifest(folder / "recordings.jsonl", root=folder)[:args.limit]
    for utt, lp in compute_log_probs(model, recordings):
        cuts = pause_frames(model, utt, args.detector) if args.cut_at_pauses else ()
        for name, words in method_words(model, lp, utt.text, decoders, times, cuts).items():
            errors[name] += word_time_errors(truth[utt.id], words)
    return {"archive": str(folder), "model": args.model, "cut_at_pauses": args.cut_at_pauses,
            "recordings": len(recordings), "words": sum(len(truth[u.id]) for u in recordings),
            **{m: summarize_time_errors(errors[m]).as_dict() for m in METHODS}}


def pause_frames(model, utt, detector: str) -> list[int]:
    """First frame of each piece when ``utt`` is cut at every pause, as ``transcribe
    --cut vad`` cuts long recordings."""
    return [round(p.offset / model.frame_seconds) for p in vad_pieces(model, utt, detector)]


def an4(args, times) -> dict | None:
    if not Path(args.an4).is_file():
        print(f"AN4 part skipped: {args.an4} not found", file=sys.stderr)
        return None
    model = load_model(args.an4_model)
    decoders = make_decoders(model, times)
    errors = defaultdict(list)
    utts = read_manifest(args.an4)[:args.limit]
    for utt, lp in compute_log_probs(model, utts):
        found = method_words(model, lp, utt.text, decoders, times)
        if "align" in found:
            for name in decoders:
                errors[name] += word_time_errors(found["align"], found[name])
    return {"manifest": args.an4, "model": args.an4_model, "recordings": len(utts),
            **{m: summarize_time_errors(errors[m]).as_dict() for m in decoders}}


def show(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(f"{'method':8} {'words':>5}  {'start med':>9} {'p95':>6} {'bias':>6}   "
          f"{'end med':>7} {'p95':>6} {'bias':>6}   {'boundary med':>12}")
    for m in METHODS:
        if m in result:
            r = result[m]
            print(f"{m:8} {r['words']:5d}  {r['start_median_ms']:9.1f} {r['start_p95_ms']:6.1f} "
                  f"{r['start_bias_ms']:6.1f}   {r['end_median_ms']:7.1f} {r['end_p95_ms']:6.1f} "
                  f"{r['end_bias_ms']:6.1f}   {r['boundary_median_ms']:12.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="an4", help="recogniser for the synthetic archive")
    p.add_argument("--archive", help="score this archive instead of making one")
    p.add_argument("--files", type=int, default=6)
    p.add_argument("--words-per-file", type=int, default=20)
    p.add_argument("--voices", default=HELD_OUT_VOICES,
                   help="comma-separated voice id globs for the generated archive")
    p.add_argument("--voices-from", metavar="MANIFEST",
                   help="use the speakers of this manifest as voices instead (e.g. a "
                        "synthetic corpus's train.jsonl, to score the voices a model knows)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--cut-at-pauses", action="store_true",
                   help="decode each recording piece by piece, cut at the pauses "
                        "--detector finds (as transcribe --cut vad does)")
    p.add_argument("--detector", choices=("energy", "silero"), default="energy")
    p.add_argument("--an4", default=os.path.expanduser("~/runs/data/an4/test.jsonl"))
    p.add_argument("--an4-model", default="an4")
    p.add_argument("--limit", type=int, default=None, help="recordings per part")
    p.add_argument("--part", choices=("all", "synthetic", "an4"), default="all")
    p.add_argument("--raw", action="store_true", help="uncorrected frame times")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.voices_from:
        args.voices = ",".join(sorted({u.speaker for u in read_manifest(args.voices_from)}))
    times = RAW_WORD_TIMES if args.raw else WORD_TIMES
    out = {"times": times.as_dict()}
    if args.part in ("all", "synthetic"):
        out["synthetic"] = synthetic(args, times)
    if args.part in ("all", "an4"):
        result = an4(args, times)
        if result:
            out["an4"] = result
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"word times {'raw' if args.raw else 'corrected'}: {out['times']}")
    if "synthetic" in out:
        s = out["synthetic"]
        show(f"synthetic archive ({s['recordings']} recordings, {s['words']} words, model "
             f"{s['model']}): error against the true spans, ms", s)
    if "an4" in out:
        show(f"AN4 test ({out['an4']['recordings']} recordings, model {args.an4_model}): "
             "decoders against forced alignment of the reference, ms", out["an4"])


if __name__ == "__main__":
    main()
