"""Speech detectors compared: the energy detector against Silero VAD (asrkit.vad), as
search segmentation uses them (``asrkit.search.segments.detect_speech``, default
settings: 0.1 s minimum speech, pauses under 0.25 s bridged, 0.05 s padding).

1. ``detect``: missed speech (share of the true speech time outside every detected
   region) and false speech (share of the true non-speech time inside one), on a
   10 ms grid,
   * on synthetic archives (asrkit.synth.archive: words at exactly known spans with
     silence between them), clean and with white noise at 20, 10 and 5 dB SNR;
   * on AN4 test recordings (``--an4``; skipped when absent) padded with 1.5 s on
     each side, of silence or of white noise at the same SNRs; their speech is taken
     as first to last word of the forced alignment of the reference (bundled ``an4``
     model), pauses between words included.
2. ``search``: a synthetic archive indexed with each detector (windows, bundled
   embedder), queried with every word of a second archive of other voices; a hit is
   right where it overlaps a not-yet-found occurrence of the word by half the
   word. Mean average precision over the top 50 hits (location MAP).

For archive MAP on held-out AN4 voices see ``bench/search_variants.py segments
--detectors energy,silero``.

    python bench/speech_detectors.py [detect|search|all] [--an4 ~/runs/data/an4/test.jsonl]
        [--limit 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.manifest import read_manifest
from asrkit.search.segments import SegmentConfig, detect_speech
from asrkit.synth import effects
from asrkit.synth.archive import synth_archive

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = ("energy", "silero")
SNRS = (None, 20.0, 10.0, 5.0)
GRID = 0.01  # seconds per scoring frame
COMMANDS = (ROOT / "asrkit/synth/words/commands.txt").read_text().split()
ARCHIVE_VOICES = "espeak-ng:en-us*,espeak-ng:en-gb+*,flite:*"
QUERY_VOICES = "espeak-ng:en-gb-scotland*,espeak-ng:en-029*,festival:*"


def frame_mask(spans, total: float) -> np.ndarray:
    """``(frames,)`` bool on the :data:`GRID`: True inside any ``(start, end)``."""
    mask = np.zeros(int(np.ceil(total / GRID)), bool)
    for a, b in spans:
        mask[int(round(a / GRID)):int(round(b / GRID))] = True
    return mask


def speech_errors(detected, truth, total: float) -> tuple[float, float, float, float]:
    """(missed speech seconds, true speech seconds, false speech seconds, true non-speech
    seconds) of ``detected`` against ``truth`` spans over ``total`` seconds."""
    d, t = frame_mask(detected, total), frame_mask(truth, total)
    return (float((t & ~d).sum() * GRID), float(t.sum() * GRID),
            float((d & ~t).sum() * GRID), float((~t).sum() * GRID))


class Tally:
    def __init__(self):
        self.sums, self.seconds, self.audio = np.zeros(4), 0.0, 0.0

    def add(self, detector: str, wave: np.ndarray, truth) -> None:
        total = len(wave) / SAMPLE_RATE
        started = time.process_time()
        spans = detect_speech(wave, SegmentConfig(detector=detector))
        self.seconds += time.process_time() - started
        self.audio += total
        self.sums += speech_errors([(s.start, s.end) for s in spans], truth, total)

    def as_dict(self) -> dict:
        missed, speech, false, silence = self.sums
        return {"missed": round(missed / speech, 4), "false": round(false / silence, 4),
                "cpu_x_realtime": round(self.seconds / self.audio, 4)}


def synthetic_detection(work: Path) -> dict:
    out = {}
    for snr in SNRS:
        folder = work / f"snr-{snr}"
        synth_archive(COMMANDS, 3, folder, words_per_file=15, voices=ARCHIVE_VOICES.split(","),
                      snr=snr, seed=21, workers=1)
        words = read_manifest(folder / "words.jsonl", root=folder)
        tallies = {d: Tally() for d in DETECTORS}
        for rec in read_manifest(folder / "recordings.jsonl", root=folder):
            wave = load_audio(rec.audio)
            truth = [(w.offset, w.offset + w.duration) for w in words if w.audio == rec.audio]
            for d in DETECTORS:
                tallies[d].add(d, wave, truth)
        out["clean" if snr is None else f"{snr:g} dB"] = {d: t.as_dict() for d, t in tallies.items()}
    return out


def an4_detection(manifest: str, limit: int) -> dict | None:
    if not Path(manifest).is_file():
        print(f"AN4 part skipped: {manifest} not found", file=sys.stderr)
        return None
    from asrkit.asr.alignment import align
    from asrkit.asr.checkpoint import load_model
    spans = {a.utt.id: (a.words[0].start, a.words[-1].end)
             for a in align(load_model("an4"), read_manifest(manifest)[:limit])}
    utts = [u for u in read_manifest(manifest)[:limit] if u.id in spans]
    pad, rng = round(1.5 * SAMPLE_RATE), np.random.default_rng(5)
    out = {}
    for snr in SNRS:
        tallies = {d: Tally() for d in DETECTORS}
        for u in utts:
            wave = effects.pad_silence(load_audio(u.audio, normalize=True), pad, pad)
            if snr is not None:
                speech = wave[pad + int(spans[u.id][0] * SAMPLE_RATE):
                              pad + int(spans[u.id][1] * SAMPLE_RATE)].astype(np.float64)
                wave = effects.add_noise(wave, effects.colored_noise(len(wave), 0.0, rng), snr,
                                         float(np.mean(speech ** 2)))
            truth = [(1.5 + spans[u.id][0], 1.5 + spans[u.id][1])]
            for d in DETECTORS:
                tallies[d].add(d, wave, truth)
        out["silence" if snr is None else f"{snr:g} dB"] = {d: t.as_dict()
                                                            for d, t in tallies.items()}
    return out


def location_ap(hits, truth, own) -> float:
    """AP of ``hits`` (best first, each with start/end/source) against ``truth``
    ``[(source, start, end)]`` occurrences of the query word (``own`` left out)."""
    targets = [t for t in truth if t != own]
    found, precisions = set(), []
    for rank, h in enumerate(hits, 1):
        for k, (src, a, b) in enumerate(targets):
            overlap = min(b, h.end) - max(a, h.start)
            if k not in found and src == h.source and overlap >= 0.5 * (b - a):
                found.add(k)
                precisions.append(len(found) / rank)
                break
    return float(np.sum(precisions) / len(targets)) if targets else float("nan")


def search_map(work: Path, snrs=(None, 10.0)) -> dict:
    from asrkit.search.index import SearchIndex, build_index
    from asrkit.search.query import Query, search
    queries_dir = work / "queries"
    synth_archive(COMMANDS, 1, queries_dir, words_per_file=20, voices=QUERY_VOICES.split(","),
                  seed=31, workers=1)
    queries = [(w.text, load_audio(w.audio, offset=w.offset, duration=w.duration))
               for w in read_manifest(queries_dir / "words.jsonl", root=queries_dir)]
    out = {}
    for snr in snrs:
        folder = work / f"search-{snr}"
        synth_archive(COMMANDS, 4, folder, words_per_file=20, voices=ARCHIVE_VOICES.split(","),
                      snr=snr, seed=41, workers=1)
        recordings = read_manifest(folder / "recordings.jsonl", root=folder)
        names = {r.audio: r.id for r in recordings}
        words = read_manifest(folder / "words.jsonl", root=folder)
        row = {}
        for d in DETECTORS:
            started = time.perf_counter()
            build_index(recordings, work / f"index-{snr}-{d}", None, SegmentConfig(detector=d))
            build = time.perf_counter() - started
            aps = []
            with SearchIndex(work / f"index-{snr}-{d}") as idx:
                for text, wave in queries:
                    hits = search(idx, [Query(text, wave)], top=50)[0]
                    truth = [(names[w.audio], w.offset, w.offset + w.duration)
                             for w in words if w.text == text]
                    aps.append(location_ap(hits, truth, None))
                segments = len(idx)
            row[d] = {"map": round(float(np.nanmean(aps)), 4), "segments": segments,
                      "build_seconds": round(build, 1)}
        out["clean" if snr is None else f"{snr:g} dB"] = row
    return out


def show(title: str, table: dict) -> None:
    print(f"\n{title}")
    for cond, row in table.items():
        print(f"  {cond:8s} " + "   ".join(
            f"{d}: " + ", ".join(f"{k} {v}" for k, v in r.items()) for d, r in row.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", nargs="?", choices=("detect", "search", "all"), default="all")
    p.add_argument("--an4", default=os.path.expanduser("~/runs/data/an4/test.jsonl"))
    p.add_argument("--limit", type=int, default=60, help="AN4 recordings")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.task in ("detect", "all"):
            out["synthetic"] = synthetic_detection(work)
            an4 = an4_detection(args.an4, args.limit)
            if an4:
                out["an4"] = an4
        if args.task in ("search", "all"):
            out["search"] = search_map(work)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    if "synthetic" in out:
        show("synthetic archive: missed / false speech (share of time)", out["synthetic"])
    if "an4" in out:
        show(f"AN4 test, {args.limit} recordings padded 1.5 s each side", out["an4"])
    if "search" in out:
        show("synthetic archive search: location MAP (top 50)", out["search"])


if __name__ == "__main__":
    main()
