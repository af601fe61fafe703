"""Long recordings: cut every 30 s with context (``fixed``) or at pauses (``vad``).

AN4 test utterances are laid end to end with pauses of 0.3 to 1.5 s (silence, or the
noise of the whole recording) into recordings of about ``--seconds`` each, clean and
with white noise at ``--snr`` dB over the whole recording (speech power measured on the
utterances). Each recording is transcribed whole, cut ``fixed`` and cut ``vad`` with
each detector, and scored against the utterances' joined reference texts; the
reference row transcribes each utterance's own span of the same audio alone. Times are
wall-clock seconds of the transcription (one thread), with the ratio to ``fixed``.

    python bench/long_cuts.py [--model an4] [--an4 ~/runs/data/an4/test.jsonl]
        [--seconds 150] [--snr 10] [--detectors energy,silero] [--json]
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
import soundfile as sf
import torch

from asrkit.asr.checkpoint import load_model
from asrkit.asr.transcription import transcribe
from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.decoding import make_decoder
from asrkit.manifest import Utterance, read_manifest
from asrkit.metrics import word_errors


def build(utts, seconds: float, snr: float | None, folder: Path, seed: int):
    """Write long recordings; return ``[(recording, [utterance spans], reference)]``."""
    rng = np.random.default_rng(seed)
    out, parts, spans, texts, at = [], [], [], [], 0

    def flush():
        nonlocal parts, spans, texts, at
        if not parts:
            return
        wave = np.concatenate(parts)
        if snr is not None:
            speech = np.concatenate([wave[a:b] for a, b in spans]).astype(np.float64)
            noise = rng.standard_normal(len(wave))
            gain = np.sqrt(np.mean(speech ** 2) / 10 ** (snr / 10))
            wave = (wave + gain * noise).astype(np.float32)
        wave = wave / max(1.0, float(np.abs(wave).max()))
        path = folder / f"long-{len(out):03d}.wav"
        sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
        rec = Utterance(path.stem, str(path), " ".join(texts))
        pieces = [Utterance(f"{path.stem}-{k}", str(path), t, offset=a / SAMPLE_RATE,
                            duration=(b - a) / SAMPLE_RATE)
                  for k, ((a, b), t) in enumerate(zip(spans, texts))]
        out.append((rec, pieces))
        parts, spans, texts, at = [], [], [], 0

    for u in utts:
        wave = load_audio(u.audio, normalize=True)
        pause = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), np.float32)
        parts += [wave, pause]
        spans.append((at, at + len(wave)))
        texts.append(u.text)
        at += len(wave) + len(pause)
        if at >= seconds * SAMPLE_RATE:
            flush()
    flush()
    return out


def run(model, utts, decoder, **options) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    hyps = [t.text for t in transcribe(model, utts, decoder, **options)]
    return hyps, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="an4")
    p.add_argument("--an4", default=os.path.expanduser("~/runs/data/an4/test.jsonl"))
    p.add_argument("--seconds", type=float, default=150.0, help="length of each recording")
    p.add_argument("--snr", type=float, default=10.0, help="noisy condition, dB")
    p.add_argument("--detectors", default="energy,silero")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not Path(args.an4).is_file():
        sys.exit(f"error: {args.an4}: no such manifest; prepare AN4 (recipes/an4)")
    model = load_model(args.model)
    decoder = make_decoder("greedy", model.vocab, model.frame_seconds)
    utts = read_manifest(args.an4)
    results = {}
    for condition, snr in (("clean", None), (f"snr{args.snr:g}", args.snr)):
        with tempfile.TemporaryDirectory(prefix="long-cuts-") as tmp:
            recordings = build(utts, args.seconds, snr, Path(tmp), args.seed)
            refs = [r.text for r, _ in recordings]
            audio = sum(sum(p.duration for p in ps) for _, ps in recordings)
            rows = {}
            pieces = [p for _, ps in recordings for p in ps]
            hyps, wall = run(model, pieces, decoder)
            rows["per utterance"] = (word_errors([p.text for p in pieces], hyps), wall)
            for name, opts in [("fixed", {"cut": "fixed"})] + [
                    (f"vad {d}", {"cut": "vad", "detector": d})
                    for d in args.detectors.split(",")]:
                hyps, wall = run(model, [r for r, _ in recordings], decoder, **opts)
                rows[name] = (word_errors(refs, hyps), wall)
            results[condition] = {
                "recordings": len(recordings), "utterances": len(pieces),
                "minutes": round(sum(len(load_audio(r.audio)) for r, _ in recordings)
                                 / SAMPLE_RATE / 60, 2),
                "speech_minutes": round(audio / 60, 2),
                **{k: {"wer": round(100 * e.rate, 2), "errors": e.errors, "words": e.reference_length,
                       "seconds": round(w, 2), "vs_fixed": round(w / rows["fixed"][1], 2)}
                   for k, (e, w) in rows.items()}}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for cond, r in results.items():
        print(f"\n{cond}: {r['recordings']} recordings ({r['minutes']} min, "
              f"{r['utterances']} utterances)")
        print(f"{'cut':14} {'WER %':>6} {'errors':>6} {'time s':>7} {'vs fixed':>8}")
        for k, v in r.items():
            if isinstance(v, dict):
                print(f"{k:14} {v['wer']:6.2f} {v['errors']:6d} {v['seconds']:7.2f} "
                      f"{v['vs_fixed']:8.2f}")


if __name__ == "__main__":
    main()
