"""Live transcription latency and speed on AN4 test, played at real-time speed.

For each final word of the streamed transcript that matches a reference word, the
delay from the end of that word in the audio to its emission. Word ends come from
forced alignment of the reference (asrkit.asr.alignment, with the bidirectional
bundled model unless --align-model says otherwise). The clock is simulated: chunk k
arrives when its last sample would have been heard, the stream starts on it when it
has arrived and the previous chunk is done, and a word is emitted when the chunk whose
update made it final has been processed (the measured compute time added). Reports the
median and 95th percentile of the delays, the real-time factor of the stream on one
core, and the offline transcription of the same recordings measured in the same run
(RTF, WER, and the stream/offline compute ratio).

    .venv/bin/python bench/stream_latency.py --model ~/runs/an4-fwd \
        [--manifest ~/runs/data/an4/test.jsonl] [--chunk-ms 100] [--decoder beam --lm LM]
        [--gain live] [--decoding-config exp/an4-stream/decoding.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import jiwer  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from asrkit.asr.alignment import align  # noqa: E402
from asrkit.asr.checkpoint import load_model  # noqa: E402
from asrkit.asr.streaming import StreamingTranscriber  # noqa: E402
from asrkit.audio import load_audio, peak_gain  # noqa: E402
from asrkit.decoding import make_decoder  # noqa: E402
from asrkit.decoding.config import load_decoding_config  # noqa: E402
from asrkit.manifest import read_manifest  # noqa: E402


def stream_one(model, dec, wave: np.ndarray, rate: int, chunk: int, gain: float | None,
               final_after: float | None = None):
    """(final words with their simulated emission times, compute seconds, text)."""
    tr = StreamingTranscriber(model, dec, gain=gain, final_after=final_after)
    emitted, done, compute = [], 0.0, 0.0
    for i in range(0, len(wave), chunk):
        piece = wave[i:i + chunk]
        arrives = (i + len(piece)) / rate
        t0 = time.perf_counter()
        update = tr.feed(piece)
        spent = time.perf_counter() - t0
        compute += spent
        done = max(done, arrives) + spent
        emitted += [(w, done) for w in update.final]
    t0 = time.perf_counter()
    update = tr.finish()
    spent = time.perf_counter() - t0
    compute += spent
    done = max(done, len(wave) / rate) + spent
    emitted += [(w, done) for w in update.final]
    return emitted, compute, tr.hypothesis.text


def delays(emitted, reference_words) -> list[tuple[float, bool]]:
    """Emission delay of each hypothesis word equal to the reference word it aligns to,
    and whether it is the recording's last word (final only when the audio ends: no
    word separator follows it)."""
    hyp = [w.word for w, _ in emitted]
    ref = [w.word for w in reference_words]
    if not hyp or not ref:
        return []
    out = []
    for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
        if chunk.type == "equal":
            for k in range(chunk.hyp_end_idx - chunk.hyp_start_idx):
                _, when = emitted[chunk.hyp_start_idx + k]
                out.append((when - reference_words[chunk.ref_start_idx + k].end,
                            chunk.hyp_start_idx + k == len(hyp) - 1))
    return out


def describe(lat: list[float]) -> str:
    if len(lat) < 2:
        return "too few words"
    q = statistics.quantiles(lat, n=20)
    return (f"median {1000 * statistics.median(lat):.0f} ms, 95th percentile "
            f"{1000 * q[18]:.0f} ms ({len(lat)} words)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", default=str(Path.home() / "runs/data/an4/test.jsonl"))
    p.add_argument("--align-model", default="an4")
    p.add_argument("--chunk-ms", type=float, default=100.0)
    p.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    p.add_argument("--lm")
    p.add_argument("--decoding-config", help="decoder settings from `asrkit lm tune`")
    p.add_argument("--final-after", type=float, help="beam search: as transcribe's")
    p.add_argument("--limit", type=int)
    p.add_argument("--gain", default="file", choices=["file", "live"],
                   help="file: the recording's own peak gain, as offline; live: the gain "
                        "of the loudest sample so far")
    args = p.parse_args()
    torch.set_num_threads(1)
    utts = read_manifest(args.manifest)[:args.limit]
    model = load_model(args.model)
    opts = {"lm": args.lm} if args.decoder == "beam" and args.lm else {}
    if args.decoding_config:
        opts = load_decoding_config(args.decoding_config)
        args.decoder = opts.pop("decoder")
    dec = make_decoder(args.decoder, model.vocab, model.frame_seconds, **opts)
    aligned = {a.utt.id: a.words for a in align(load_model(args.align_model), utts)}
    rate = model.feature_config.sample_rate
    chunk = int(round(args.chunk_ms / 1000 * rate))
    lat, stream_s, offline_s, audio_s = [], 0.0, 0.0, 0.0
    refs, stream_hyps, offline_hyps = [], [], []
    for utt in utts:
        if utt.id not in aligned:
            continue
        raw = load_audio(utt.audio, normalize=False)
        gain = peak_gain(float(np.abs(raw).max())) if args.gain == "file" else None
        emitted, compute, text = stream_one(model, dec, raw, rate, chunk, gain,
                                            args.final_after)
        lat += delays(emitted, aligned[utt.id])
        stream_s += compute
        audio_s += len(raw) / rate
        t0 = time.perf_counter()
        with torch.inference_mode():
            wave = load_audio(utt.audio, normalize=model.feature_config.gain_normalize)
            log_probs, _ = model(torch.from_numpy(wave)[None])
        offline_hyps.append(dec.decode(log_probs)[0].text)
        offline_s += time.perf_counter() - t0
        refs.append(model.vocab.normalize(utt.text))
        stream_hyps.append(text)
    print(f"recordings {len(refs)}, audio {audio_s:.1f} s, chunk {args.chunk_ms:g} ms, "
          f"decoder {args.decoder}{' + LM' if opts else ''}, 1 thread"
          + (f", final after {args.final_after:g} s" if args.final_after is not None else ""))
    print("emission delay after the word's end: all words "
          + describe([d for d, _ in lat]))
    print("  words another word follows: " + describe([d for d, last in lat if not last]))
    print("  each recording's last word (final when the audio ends): "
          + describe([d for d, last in lat if last]))
    print(f"real-time factor: stream {stream_s / audio_s:.4f}, offline "
          f"{offline_s / audio_s:.4f} (stream / offline compute {stream_s / offline_s:.2f})")
    print(f"WER: stream {100 * jiwer.wer(refs, stream_hyps):.2f} % ({args.gain} gain), offline {100 * jiwer.wer(refs, offline_hyps):.2f} %")


if __name__ == "__main__":
    main()
