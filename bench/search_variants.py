"""Search front ends compared on held-out AN4 voices: candidate segments and frames.

1. ``segments``: one embedder, the held-out speakers' archive indexed three ways —
   VAD windows, word runs from a recogniser's CTC alignment, and both — scored by
   archive MAP exactly as in ``bench/search_quality.py`` (each held-out single word
   queries the archive; relevant = the transcript holds the word).
2. ``frames``: two embedders trained alike on the same short budget (same recordings,
   epochs, pairs, seed), one on log-mel frames and one on the acoustic model's states,
   scored on the isolated-word task (AP / MAP / P@10) and on archive MAP (windows).

The bundled AN4 acoustic model was trained on AN4 *with transcripts*, including most
held-out search speakers (they are held out from the embedder only), so numbers that
involve it are optimistic for truly unseen voices.

    python bench/search_variants.py segments [--embedder E] [--asr-model an4]
        [--kinds windows --detectors energy,silero]   # the two speech detectors
    python bench/search_variants.py frames [--recordings 240] [--epochs 6]
    ... --speakers unseen-by-asr   # speakers neither the acoustic model nor the embedder heard
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from _an4 import AN4, an4_utterances, heldout_audio, training_audio, word_sets
from asrkit.corpora.an4 import read_an4_split
from asrkit.search.embedder_training import TrainConfig, train_embedder
from asrkit.search.embedding import (AutoencoderConfig, EmbedderConfig, FrontendConfig,
                              asr_frontend_config, load_embedder)
from asrkit.features import FeatureConfig
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.evaluation import evaluate_embeddings, load_word_segments
from asrkit.search.segments import SegmentConfig
from search_quality import _embedding_rankings, archive_average_precisions


def archive_map(embedder, words, archive, config: SegmentConfig, work: Path) -> dict:
    """Index ``archive`` with ``config`` candidates, then archive MAP over ``words``."""
    started = time.perf_counter()
    summary = build_index(archive, work, embedder, config)
    build = time.perf_counter() - started
    texts = {u.id: set(u.text.upper().split()) for u in archive}
    names = [u.id for u in archive]
    with SearchIndex(work) as idx:
        ranks, times = _embedding_rankings(idx, words, names)
    aps = archive_average_precisions(words, ranks, names, texts)
    return {"map": float(np.mean(aps)), "queries": len(aps),
            "segments": summary.total_segments, "build_seconds": round(build, 1),
            "median_query_ms": round(1000 * float(np.median(times)), 2)}


def compare_segments(args, words, archive, work: Path) -> dict:
    embedder = load_embedder(args.embedder)
    out = {}
    for kind in args.kinds.split(","):
        for detector in args.detectors.split(","):
            config = SegmentConfig(kind=kind, asr_model=None if kind == "windows" else
                                   args.asr_model, word_pad=args.word_pad,
                                   word_tail=args.word_tail, max_words=args.max_words,
                                   detector=detector)
            name = kind if detector == "energy" else f"{kind}+{detector}"
            out[name] = archive_map(embedder, words, archive, config, work / name)
            print(f"  {name:15s} archive MAP {out[name]['map']:.3f}  ({out[name]['segments']} "
                  f"segments, built in {out[name]['build_seconds']:.0f} s, "
                  f"{out[name]['median_query_ms']:.1f} ms/query)", flush=True)
    return out


def asr_unseen_speakers(valid_speakers: int = 6, seed: int = 0) -> set[str]:
    """AN4 speakers the bundled acoustic model never heard: its validation speakers
    (chosen as `asrkit.corpora.an4.prepare_an4` does) and the official test speakers."""
    import random
    train_speakers = sorted({u.speaker for u in read_an4_split(AN4, "train")})
    valid = set(random.Random(seed).sample(train_speakers, valid_speakers))
    return valid | {u.speaker for u in read_an4_split(AN4, "test")}


def evaluation_sets(speakers: str):
    """(query words, archive, embedder training recordings) for ``speakers``."""
    if speakers == "heldout":
        held, _ = word_sets()
        return held, heldout_audio(), training_audio()
    unseen = asr_unseen_speakers()
    utts = an4_utterances()
    words = [u for u in utts if u.speaker in unseen and len(u.text.split()) == 1]
    return (words, [u for u in utts if u.speaker in unseen],
            [u for u in training_audio() if u.speaker not in unseen])


def compare_frames(args, words, archive, work: Path) -> dict:
    material = args.training
    recordings = material[::max(1, len(material) // args.recordings)]
    config = TrainConfig(epochs=args.epochs, windows_per_epoch=args.pairs,
                         speed_factors=(0.9, 1.0, 1.1), seed=0)
    fronts = {"log-mel": FrontendConfig(features=FeatureConfig(kind="fbank", n_mels=40)),
              "asr": asr_frontend_config(args.asr_model)}
    out = {}
    for name, front in fronts.items():
        if name not in args.fronts.split(","):
            continue
        started = time.perf_counter()
        model = EmbedderConfig(front, AutoencoderConfig(
            input_dim=front.dim, stack=2 if front.kind == "asr" else 3))
        work = args.keep or work
        embedder = train_embedder(work / f"{name}.pt", recordings, config=config,
                                  embedder_config=model)
        trained = time.perf_counter() - started
        r = evaluate_embeddings(embedder, words)
        arch = archive_map(work / f"{name}.pt", words, archive, SegmentConfig(),
                           work / f"{name}-index")
        out[name] = {"isolated": asdict(r), "archive": arch,
                     "train_seconds": round(trained), "recordings": len(recordings)}
        print(f"  {name:8s} AP {r.average_precision:.3f}  MAP {r.mean_average_precision:.3f}"
              f"  P@10 {r.precision_at_10:.3f}  archive MAP {arch['map']:.3f}  "
              f"(trained on {len(recordings)} recordings in {trained:.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["segments", "frames"])
    parser.add_argument("--embedder", type=Path, default=None)
    parser.add_argument("--asr-model", default="an4")
    parser.add_argument("--kinds", default="windows,words,both", help="segment kinds")
    parser.add_argument("--detectors", default="energy",
                        help="speech detectors to compare (energy,silero)")
    parser.add_argument("--word-pad", type=float, default=SegmentConfig.word_pad)
    parser.add_argument("--word-tail", type=float, default=SegmentConfig.word_tail)
    parser.add_argument("--max-words", type=int, default=SegmentConfig.max_words)
    parser.add_argument("--recordings", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=2048, help="training pairs per epoch")
    parser.add_argument("--speakers", choices=["heldout", "unseen-by-asr"], default="heldout",
                        help="evaluate on the embedder's held-out speakers, or on the AN4 "
                             "speakers the bundled acoustic model never heard (who are then "
                             "also left out of embedder training)")
    parser.add_argument("--fronts", default="log-mel,asr", help="frames to compare")
    parser.add_argument("--keep", type=Path, default=None, help="keep trained embedders here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    queries, archive, args.training = evaluation_sets(args.speakers)
    words = load_word_segments(queries)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    print(f"{args.speakers} speakers: {len(words)} single words; archive of {len(archive)} "
          f"recordings", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        task = compare_segments if args.task == "segments" else compare_frames
        results = task(args, words, archive, Path(tmp))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
