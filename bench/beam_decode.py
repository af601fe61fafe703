"""Beam-search CTC decoding speed and accuracy: asrkit vs flashlight (torchaudio) vs
pyctcdecode, on the same log-probs, with and without a word 3-gram LM; then on real
log-probs (the bundled AN4 model on AN4 test) with a word LM and no lexicon.

The log-probs imitate a trained character CTC model: a synthetic language (pseudo
words, Zipfian bigram chains) is spelled one spike per character between blank
frames, with near-miss letters, weak spikes and stray spikes so greedy decoding makes
errors a language model can fix. The LM is a Kneser–Ney 3-gram (asrkit lm build's
estimator) trained on other sentences of the same language.

    python bench/beam_decode.py [--utterances 20] [--beams 10,50,100] [--random] [--json]
                                [--part all|synthetic|real]

Times are wall-clock (and CPU) milliseconds per utterance, one utterance at a time
on one thread (the "threads" row decodes the batch with asrkit's thread pool);
"x fl" and "x py" are the wall-time ratios to flashlight and to pyctcdecode at the
same beam and LM setting, measured in the same run (the machine may be busy: compare
ratios, not times across runs). All decoders use their default pruning.

The real part decodes the AN4 test recordings (``$AN4_DIR``, default
``../shared/data/an4``; skipped with a message when absent) with the bundled ``an4``
model and a word 3-gram estimated from the AN4 training transcripts, at alpha 0.25
and beta 1.0, without a lexicon.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asrkit.decoding.beam import BeamSearchDecoder
from asrkit.lm.ngram import write_arpa
from asrkit.lm.estimate import estimate_kneser_ney
from asrkit.metrics import cer, wer
from asrkit.text import Vocabulary

VOCAB = Vocabulary(tuple(" ABCDEFGHIJKLMNOPQRSTUVWXYZ'"))
FRAMES = 500
ALPHA, BETA = 0.5, 1.0  # LM weight (natural-log LM scores) and word bonus, for all decoders
REAL_ALPHA, REAL_BETA = 0.25, 1.0  # the same on AN4 (the recipe's tuned values)


class Language:
    """Pseudo words with Zipfian frequencies; each word prefers a few successors."""

    def __init__(self, rng: np.random.Generator, n_words: int = 1000):
        onsets, vowels, codas = list("BCDFGHKLMNPRSTVWZ") + ["CH", "SH", "TR", "ST"], \
            ["A", "E", "I", "O", "U", "EA", "OU"], ["", "", "N", "R", "S", "T", "L", "CK"]
        words: set[str] = set()
        while len(words) < n_words:
            words.add("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                              for _ in range(rng.integers(1, 4))))
        self.words = sorted(words)
        self.rng = rng
        zipf = 1.0 / np.arange(1, n_words + 1)
        self.unigram = zipf / zipf.sum()
        self.successors = [rng.choice(n_words, 12, replace=False, p=self.unigram)
                           for _ in range(n_words)]

    def sentence(self, n_words: int) -> list[str]:
        w = self.rng.choice(len(self.words), p=self.unigram)
        out = [w]
        for _ in range(n_words - 1):
            nxt = self.successors[w] if self.rng.random() < 0.8 else range(len(self.words))
            w = self.rng.choice(list(nxt))
            out.append(w)
        return [self.words[i] for i in out]


def spell(words: list[str], rng: np.random.Generator, frames: int = FRAMES):
    """Peaky ``(frames, vocab)`` log-probs of ``words`` (cut to whole words that fit)
    and the reference text they spell."""
    labels, kept = [], []
    for word in words:
        piece = []
        for ch in (" " if kept else "") + word:
            piece += [0] * int(rng.integers(0, 4)) + [VOCAB.symbols.index(ch) + 1] * int(rng.integers(1, 3))
        if len(labels) + len(piece) > frames - 2:
            break
        labels += piece
        kept.append(word)
    labels += [0] * (frames - len(labels))
    logits = rng.normal(0.0, 1.5, (frames, len(VOCAB))) - 9.0
    logits[np.arange(frames), labels] = 0.0
    for t, lab in enumerate(labels):
        u = rng.random()
        if lab > 1 and u < 0.04:  # near miss: another letter a little ahead
            logits[t, rng.integers(2, len(VOCAB))] = rng.uniform(0.0, 1.5)
        elif lab > 1 and u < 0.05:  # weak spike: blank ahead
            logits[t, 0] = rng.uniform(0.0, 1.0)
        elif lab == 0 and u < 0.005:  # stray spike
            logits[t, rng.integers(2, len(VOCAB))] = rng.uniform(0.0, 1.0)
    lp = torch.log_softmax(torch.tensor(logits), -1).float()
    return lp, " ".join(kept)


def make_data(n: int, seed: int, random_lp: bool):
    rng = np.random.default_rng(seed)
    lang = Language(rng)
    train = [lang.sentence(int(rng.integers(4, 15))) for _ in range(20000)]
    items = [spell(lang.sentence(60), rng) for _ in range(n)]
    if random_lp:
        items = [(torch.log_softmax(torch.randn(FRAMES, len(VOCAB)) * 2, -1), ref)
                 for _, ref in items]
    return lang, train, items


def time_per_utt(decode_one, items) -> tuple[float, float, list[str]]:
    """Wall and CPU milliseconds per utterance, and the texts."""
    decode_one(items[0][0])  # warm up (compilation, caches)
    texts = []
    start, cpu = time.perf_counter(), time.process_time()
    for lp, _ in items:
        texts.append(" ".join(decode_one(lp).split()))
    n = len(items)
    return 1000 * (time.perf_counter() - start) / n, 1000 * (time.process_time() - cpu) / n, texts


def flashlight(beam: int, lexicon: Path | None, lm: Path | None):
    from torchaudio.models.decoder import ctc_decoder
    tokens = ["-"] + ["|" if s == " " else s for s in VOCAB.symbols]
    dec = ctc_decoder(lexicon=str(lexicon) if lexicon else None, tokens=tokens,
                      lm=str(lm) if lm else None, beam_size=beam, lm_weight=ALPHA * math.log(10),
                      word_score=BETA, sil_score=0.0, blank_token="-", sil_token="|")

    def one(lp):
        hyp = dec(lp[None].contiguous())[0][0]
        if lexicon:
            return " ".join(hyp.words)
        return "".join(tokens[i] for i in hyp.tokens.tolist()).replace("|", " ")
    return one


def pyctc(beam: int, lm: Path | None, words: list[str], vocab: Vocabulary = VOCAB,
          alpha: float = ALPHA, beta: float = BETA):
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        return None
    dec = build_ctcdecoder([""] + list(vocab.symbols), kenlm_model_path=str(lm) if lm else None,
                           unigrams=words if lm else None, alpha=alpha, beta=beta)
    return lambda lp: dec.decode(lp.numpy(), beam_width=beam)


def run(args) -> list[dict]:
    lang, train, items = make_data(args.utterances, args.seed, args.random)
    refs = [ref for _, ref in items]
    tmp = Path(tempfile.mkdtemp())
    arpa = tmp / "lm.arpa"
    write_arpa(arpa, estimate_kneser_ney(train, 3))
    lexicon = tmp / "lexicon.txt"  # flashlight spelling format: WORD W O R D
    lexicon.write_text("".join(f"{w} {' '.join(w)}\n" for w in lang.words))
    rows = []
    for lm_name, lm, lex in (("none", None, None), ("3-gram", arpa, lexicon)):
        for beam in args.beams:
            candidates = [("flashlight" + (" +lexicon" if lex else ""), flashlight(beam, lex, lm))]
            for label, lexi in ((("asrkit", None),) if lm is None else
                                (("asrkit", None), ("asrkit +lexicon", lexicon))):
                dec = BeamSearchDecoder(VOCAB, 0.02, beam_size=beam, lm=lm, alpha=ALPHA,
                                        beta=BETA, lexicon=lexi, num_workers=1)
                candidates.append((label, lambda lp, d=dec: d.decode(lp[None])[0].text))
            py = pyctc(beam, lm, lang.words)
            if py is not None:
                candidates.append(("pyctcdecode", py))
            group = _measure(candidates, items, refs, lm=lm_name, beam=beam)
            group.append(_threaded(items, refs, beam, lm, lm_name, group[0]["ms_per_utt"]))
            rows += _with_ratios(group, args.json)
    return rows


def _measure(candidates, items, refs, **keys) -> list[dict]:
    """One row per (name, decode function): times, WER and CER on ``items``."""
    rows = []
    for name, fn in candidates:
        ms, cpu, texts = time_per_utt(fn, items)
        rows.append(dict(keys, decoder=name, ms_per_utt=round(ms, 2),
                         cpu_ms_per_utt=round(cpu, 2), utterances=len(items),
                         wer=round(wer(refs, texts), 4), cer=round(cer(refs, texts), 4)))
    return rows


def _with_ratios(group: list[dict], as_json: bool) -> list[dict]:
    """Add each row's time ratio to flashlight's and pyctcdecode's in the group."""
    fl = next((r["ms_per_utt"] for r in group if r["decoder"].startswith("flashlight")), None)
    py = next((r["ms_per_utt"] for r in group if r["decoder"] == "pyctcdecode"), None)
    for r in group:
        r["ratio"] = round(r["ms_per_utt"] / fl, 2) if fl else None
        r["ratio_pyctcdecode"] = round(r["ms_per_utt"] / py, 2) if py else None
        _show(r, as_json)
    return group


def run_real(args) -> list[dict]:
    """The bundled AN4 model's log-probs on AN4 test: greedy, asrkit beam and
    pyctcdecode with a word 3-gram of the training transcripts, no lexicon."""
    from _an4 import AN4
    if not (AN4 / "etc").is_dir():
        print(f"real posteriors skipped: no AN4 corpus at {AN4} (set AN4_DIR)", file=sys.stderr)
        return []
    from asrkit.asr.checkpoint import load_model
    from asrkit.asr.transcription import compute_log_probs
    from asrkit.corpora.an4 import read_an4_split
    from asrkit.decoding.base import GreedyDecoder
    from asrkit.pretrained import resolve_model

    model = load_model(resolve_model("an4"))
    vocab = model.vocab
    train = [vocab.normalize(u.text).split() for u in read_an4_split(AN4, "train")]
    test = read_an4_split(AN4, "test")
    items = [(lp.float(), vocab.normalize(u.text)) for u, lp in compute_log_probs(model, test)]
    refs = [ref for _, ref in items]
    arpa = Path(tempfile.mkdtemp()) / "an4_train.arpa"
    write_arpa(arpa, estimate_kneser_ney(train, 3))
    words = sorted({w for s in train for w in s})
    greedy = GreedyDecoder(vocab, model.frame_seconds)
    rows = []
    for beam in args.beams:
        dec = BeamSearchDecoder(vocab, model.frame_seconds, beam_size=beam, lm=arpa,
                                alpha=REAL_ALPHA, beta=REAL_BETA, num_workers=1)
        candidates = [("greedy", lambda lp: greedy.decode(lp[None])[0].text),
                      ("asrkit", lambda lp, d=dec: d.decode(lp[None])[0].text)]
        py = pyctc(beam, arpa, words, vocab, REAL_ALPHA, REAL_BETA)
        if py is not None:
            candidates.append(("pyctcdecode", py))
        rows += _with_ratios(_measure(candidates, items, refs, lm="an4 3g", beam=beam),
                             args.json)
    return rows


def _threaded(items, refs, beam, lm, lm_name, base) -> dict:
    """Whole batch at once: asrkit spreads utterances over its thread pool."""
    dec = BeamSearchDecoder(VOCAB, 0.02, beam_size=beam, lm=lm, alpha=ALPHA, beta=BETA)
    batch = torch.stack([lp for lp, _ in items])
    dec.decode(batch[:2])
    start = time.perf_counter()
    texts = [h.text for h in dec.decode(batch)]
    ms = 1000 * (time.perf_counter() - start) / len(items)
    return dict(lm=lm_name, beam=beam, decoder=f"asrkit, {dec.num_workers} threads",
                ms_per_utt=round(ms, 2), cpu_ms_per_utt=None,
                utterances=len(items), wer=round(wer(refs, texts), 4),
                cer=round(cer(refs, texts), 4))


def _show(row: dict, as_json: bool) -> None:
    if as_json:
        return
    if not hasattr(_show, "header"):
        _show.header = True
        print(f"{'LM':7} {'beam':>4}  {'decoder':22} {'ms/utt':>8} {'x fl':>6} {'x py':>6} "
              f"{'cpu ms':>7} {'WER':>7} {'CER':>7}")
    cpu = f"{row['cpu_ms_per_utt']:7.1f}" if row["cpu_ms_per_utt"] is not None else " " * 7
    fl, py = (f"{row[k]:>6.2f}" if row[k] is not None else " " * 6
              for k in ("ratio", "ratio_pyctcdecode"))
    print(f"{row['lm']:7} {row['beam']:>4}  {row['decoder']:22} {row['ms_per_utt']:>8.1f} "
          f"{fl} {py} {cpu} {100 * row['wer']:>6.2f}% {100 * row['cer']:>6.2f}%", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=20)
    p.add_argument("--beams", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50, 100])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random", action="store_true", help="Flat random log-probs instead of peaky ones.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--part", choices=("all", "synthetic", "real"), default="all")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = run(args) if args.part != "real" else []
    rows += run_real(args) if args.part != "synthetic" else []
    if args.json:
        json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
