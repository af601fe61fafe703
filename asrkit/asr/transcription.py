"""Batch transcription: inputs (files, folders, manifests) → log-probs → transcripts.

Work is batched by length, streamed (memory stays bounded however many files), and
long recordings are cut into overlapping chunks whose centres are stitched together
(``cut="fixed"``), or at pauses into pieces recognised alone (``cut="vad"``,
:mod:`asrkit.asr.cutting`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..audio import audio_info, load_audio, peak_gain
from ..decoding.base import Decoder, GreedyDecoder, Hypothesis, WordTiming
from ..errors import AsrkitError, AudioError
from ..manifest import Utterance, find_audio_files, iter_manifest
from ..text import BLANK
from .calibration import calibrate_hypothesis
from .cutting import check_cut, pause_cuts, speech_regions
from .model import AsrModel

log = logging.getLogger("asrkit")

CHUNK_SECONDS = 30.0  # recordings longer than this are processed chunk by chunk
CONTEXT_SECONDS = 2.0  # extra audio on each side of a chunk, discarded after the model
MANIFEST_SUFFIXES = (".jsonl", ".json")

# (utterance, loaded waveform (samples,)) → changed waveform (samples,)
WaveTransform = Callable[[Utterance, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Transcript:
    utt: Utterance
    hypothesis: Hypothesis
    duration: float  # seconds of audio

    @property
    def text(self) -> str:
        return self.hypothesis.text


def collect_inputs(inputs: Sequence[str | Path],
                   root: str | Path | None = None) -> list[Utterance]:
    """Files, folders (recursive) and JSON Lines manifests → utterances.

    Ids are file stems for files, paths relative to the folder for folders (with the
    extension kept where ``a.wav`` and ``a.flac`` sit side by side), and the manifest's
    own ids for manifests. Raises :class:`AsrkitError` for a missing input, and with
    ``root`` for a manifest line whose audio lies outside that folder.
    """
    utts: list[Utterance] = []
    for item in map(Path, inputs):
        if item.is_dir():
            utts += _folder_utterances(item)
        elif item.suffix.lower() in MANIFEST_SUFFIXES:
            utts += list(iter_manifest(item, root=root))
        elif item.exists():
            utts.append(Utterance(item.stem, str(item)))
        else:
            raise AudioError(f"{item}: no such file or folder")
    return utts


def _folder_utterances(folder: Path) -> list[Utterance]:
    files = find_audio_files(folder)
    stems = Counter(f.relative_to(folder).with_suffix("").as_posix() for f in files)
    utts = []
    for f in files:
        rel = f.relative_to(folder)
        stem = rel.with_suffix("").as_posix()
        # Two files with one stem would share an id and so one output file.
        utts.append(Utterance(stem if stems[stem] == 1 else rel.as_posix(), str(f)))
    return utts


def compute_log_probs(
    model: AsrModel, utterances: Iterable[Utterance], batch_seconds: float = 240.0,
    on_skip: Callable[[Utterance, str], None] | None = None, group: int = 512,
    transform: WaveTransform | None = None, cut: str = "fixed", detector: str = "energy",
) -> Iterator[tuple[Utterance, torch.Tensor]]:
    """Yield ``(utterance, log_probs (frames, vocab))`` for each readable utterance.

    ``transform(utt, wave)`` changes each loaded ``(samples,)`` before recognition
    (e.g. a test condition); a long recording is changed chunk by chunk.

    Recordings longer than :data:`CHUNK_SECONDS` are cut as ``cut`` says: ``fixed``
    chunks with :data:`CONTEXT_SECONDS` of context, or ``vad``: at pauses found by
    ``detector`` (energy or silero), each piece recognised alone (see
    :mod:`asrkit.asr.cutting`).

    Utterances are taken ``group`` at a time, sorted by length and batched so the
    padded audio of a batch stays under ``batch_seconds``. Unreadable ones are passed
    to ``on_skip(utt, reason)`` and left out. Output order follows input order within
    each group.
    """
    for utt, log_probs, _ in _log_probs_and_cuts(model, utterances, batch_seconds, on_skip,
                                                 group, transform, cut, detector):
        yield utt, log_probs


def _log_probs_and_cuts(model, utterances, batch_seconds, on_skip, group, transform, cut,
                        detector):
    """:func:`compute_log_probs`, each item with the first frames of the pieces a
    recording was cut into at pauses (empty when it was not)."""
    model.eval()
    check_cut(cut, detector)
    pending: list[Utterance] = []
    for utt in utterances:
        pending.append(utt)
        if len(pending) >= group:
            yield from _process_group(model, pending, batch_seconds, on_skip, transform,
                                      cut, detector)
            pending = []
    if pending:
        yield from _process_group(model, pending, batch_seconds, on_skip, transform,
                                  cut, detector)


def transcribe(
    model: AsrModel, inputs: Iterable[Utterance] | Sequence[str | Path],
    decoder: Decoder | None = None, batch_seconds: float = 240.0,
    on_skip: Callable[[Utterance, str], None] | None = None,
    transform: WaveTransform | None = None, calibrated: bool = True,
    cut: str = "vad", detector: str = "energy",
) -> Iterator[Transcript]:
    """Transcribe utterances (or paths, see :func:`collect_inputs`) one by one;
    ``transform``, ``cut`` and ``detector`` as in :func:`compute_log_probs`, except that
    recordings over 30 s are cut at pauses by default (``cut="vad"``: fewer errors than
    fixed chunks on long AN4 recordings, clean and noisy; bench/long_cuts.py). Word
    confidences go through the model's calibration if it has one, unless ``calibrated``
    is False (raw posteriors)."""
    inputs = list(inputs)
    if inputs and not isinstance(inputs[0], Utterance):
        inputs = collect_inputs(inputs)
    decoder = decoder or GreedyDecoder(model.vocab, model.frame_seconds)
    calibration = model.calibration if calibrated else None
    for utt, log_probs, cuts in _log_probs_and_cuts(model, inputs, batch_seconds, on_skip,
                                                    512, transform, cut, detector):
        hyp = calibrate_hypothesis(decode_pieces(decoder, log_probs, cuts), calibration)
        duration = log_probs.shape[0] * model.frame_seconds
        yield Transcript(utt, hyp, duration)


def decode_pieces(decoder: Decoder, log_probs: torch.Tensor, cuts: Sequence[int]) -> Hypothesis:
    """Decode ``log_probs (frames, vocab)``; a recording cut at pauses (``cuts``: first
    frame of each piece) piece by piece, so a cut is always a word boundary (CTC models
    mark the space between words, not the silence around them), hypotheses joined with
    their frames and times moved to the piece's place."""
    if not cuts:
        return decoder.decode(log_probs.unsqueeze(0))[0]
    bounds = list(cuts) + [len(log_probs)]
    hyps = []
    for a, b in zip(bounds, bounds[1:]):
        h = decoder.decode(log_probs[a:b].unsqueeze(0))[0]
        shift = a * decoder.frame_seconds
        hyps.append(Hypothesis(
            h.text, h.tokens, tuple(f + a for f in h.frames),
            tuple(WordTiming(w.word, w.start + shift, w.end + shift, w.confidence)
                  for w in h.words), h.score, h.am_score, h.lm_score))
    return Hypothesis(" ".join(h.text for h in hyps if h.text),
                      sum((h.tokens for h in hyps), ()), sum((h.frames for h in hyps), ()),
                      sum((h.words for h in hyps), ()), sum(h.score for h in hyps),
                      sum(h.am_score for h in hyps), sum(h.lm_score for h in hyps))


def _process_group(model, utts, batch_seconds, on_skip, transform=None, cut="fixed",
                   detector="energy"):
    # Work is keyed by position in the group, not by id: ids given by the user (two
    # manifests, a file named twice) need not be unique.
    durations = {}
    shortest = min_seconds(model)
    for i, utt in enumerate(utts):
        try:
            durations[i] = _duration(utt)
        except AsrkitError as e:
            _skip(on_skip, utt, str(e))
            continue
        if 0 < durations[i] < shortest:  # padded to a frame it would still get a "word"
            # (no samples at all is reported by the audio reader, as elsewhere)
            _skip(on_skip, utt, f"{utt.audio}: too short to transcribe: "
                                f"{1000 * durations.pop(i):.1f} ms of audio; the model needs "
                                f"at least {1000 * shortest:.0f} ms")
    short = sorted((i for i in durations if durations[i] <= CHUNK_SECONDS),
                   key=lambda i: durations[i])
    results: dict[int, torch.Tensor] = {}
    batch: list[int] = []
    for i in short:
        if batch and durations[i] * (len(batch) + 1) > batch_seconds:
            results.update(_run_batch(model, utts, batch, on_skip, transform))
            batch = []
        batch.append(i)
    if batch:
        results.update(_run_batch(model, utts, batch, on_skip, transform))
    for i in durations:
        if i in results:
            yield utts[i], results.pop(i), ()
        elif durations[i] > CHUNK_SECONDS:
            try:
                if cut == "vad":
                    yield utts[i], *_cut_log_probs(model, utts[i], transform, batch_seconds,
                                                   detector)
                else:
                    yield utts[i], _long_log_probs(model, utts[i], transform), ()
            except AsrkitError as e:
                _skip(on_skip, utts[i], str(e))


@torch.inference_mode()
def _run_batch(model: AsrModel, utts: list[Utterance], positions: list[int], on_skip,
               transform: WaveTransform | None = None) -> dict[int, torch.Tensor]:
    """Log-probs ``(frames, vocab)`` of ``utts[i]`` for each readable ``i`` in ``positions``."""
    waves, kept = [], []
    for i in positions:
        try:
            wave = _load(model, utts[i])
            if transform is not None:
                wave = transform(utts[i], wave)
            waves.append(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
            kept.append(i)
        except AsrkitError as e:
            _skip(on_skip, utts[i], str(e))
    if not kept:
        return {}
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    log_probs, out_lengths = model(padded, lengths)
    return {i: log_probs[b, :out_lengths[b]].clone() for b, i in enumerate(kept)}


@torch.inference_mode()
def _long_log_probs(model: AsrModel, utt: Utterance,
                    transform: WaveTransform | None = None) -> torch.Tensor:
    """Chunked inference for a long recording, memory bounded by the chunk size.

    Each chunk of :data:`CHUNK_SECONDS` is run with :data:`CONTEXT_SECONDS` of audio
    on both sides so the recurrent stack sees context; only the centre frames are kept.
    """
    total = _duration(utt)
    step_frames = round(CHUNK_SECONDS / model.frame_seconds)
    gain = _gain(utt, total) if model.feature_config.gain_normalize else 1.0
    pieces, start = [], 0.0
    while start < total:
        left = min(CONTEXT_SECONDS, start)
        seg_start = start - left
        seg_dur = min(left + CHUNK_SECONDS + CONTEXT_SECONDS, total - seg_start)
        wave = load_audio(utt.audio, offset=utt.offset + seg_start, duration=seg_dur,
                          normalize=False)
        wave = wave * gain
        if transform is not None:
            wave = transform(utt, wave)
        log_probs, _ = model(torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None])
        skip = round(left / model.frame_seconds) if start > 0 else 0
        pieces.append(log_probs[0, skip:skip + step_frames])
        start += CHUNK_SECONDS
    return torch.cat(pieces)


def vad_pieces(model: AsrModel, utt: Utterance, detector: str = "energy") -> list[Utterance]:
    """``utt`` cut at pauses into pieces of at most :data:`CHUNK_SECONDS` that tile it,
    each a segment (offset, duration) of the same audio, cut on the model's frame grid."""
    sr = model.feature_config.sample_rate
    total = round(_duration(utt) * sr)
    grid = max(1, round(model.frame_seconds * sr))
    regions = speech_regions(utt.audio, utt.offset, total / sr, detector, sr)
    return [Utterance(f"{utt.id}@{a}", utt.audio, offset=utt.offset + a / sr,
                      duration=(b - a) / sr)
            for a, b in pause_cuts(regions, total, round(CHUNK_SECONDS * sr), grid)]


def _cut_log_probs(model: AsrModel, utt: Utterance, transform: WaveTransform | None,
                   batch_seconds: float, detector: str) -> tuple[torch.Tensor, list[int]]:
    """Log-probs of a long recording cut at pauses (:func:`vad_pieces`), each piece
    recognised alone (batched as short recordings are) and laid end to end, every piece
    but the last trimmed or padded to its exact number of frames so times stay true;
    with the first frame of each piece."""
    pieces = vad_pieces(model, utt, detector)
    failed: list[str] = []
    out = {u.id: lp for u, lp, _ in _process_group(model, pieces, batch_seconds,
                                                 lambda u, why: failed.append(why), transform)}
    if not out or (failed and not all("too short" in why for why in failed)):
        raise AudioError(failed[0] if failed else f"{utt.audio}: nothing to transcribe")
    width = next(iter(out.values())).shape[1]
    rows = []
    for k, piece in enumerate(pieces):
        frames = round(piece.duration / model.frame_seconds)
        lp = out.get(piece.id)
        if lp is None:  # a sliver shorter than one analysis window: silence
            lp = torch.full((frames, width), -1e4)
            lp[:, BLANK] = 0.0
        elif k < len(pieces) - 1:
            if len(lp) >= frames:
                lp = lp[:frames]
            else:
                lp = torch.cat([lp, lp[-1:].expand(frames - len(lp), -1)])
        rows.append(lp)
    starts = np.cumsum([0] + [len(r) for r in rows[:-1]]).tolist()
    return torch.cat(rows), starts


def min_seconds(model: AsrModel) -> float:
    """The shortest audio that fills one analysis window and one output frame; shorter
    audio would be zero-padded into a frame of silence that the model still labels."""
    fc = model.feature_config
    return max(fc.n_fft / fc.sample_rate, model.frame_seconds)


def _gain(utt: Utterance, total: float) -> float:
    """The gain :func:`~asrkit.audio.normalize_gain` gives the utterance's own samples
    (``total`` seconds from its offset, not the whole file: a short segment is scaled by
    its own peak too), found a chunk at a time."""
    peak, start = 0.0, 0.0
    while start < total:
        wave = load_audio(utt.audio, offset=utt.offset + start,
                          duration=min(CHUNK_SECONDS, total - start))
        peak = max(peak, float(np.abs(wave).max()))
        start += CHUNK_SECONDS
    return peak_gain(peak)


def _load(model: AsrModel, utt: Utterance):
    return load_audio(utt.audio, offset=utt.offset, duration=utt.duration,
                      normalize=model.feature_config.gain_normalize)


def _duration(utt: Utterance) -> float:
    if utt.duration is not None:
        return utt.duration
    return audio_info(utt.audio).duration - utt.offset


def _skip(on_skip, utt, reason):
    log.debug("skipped %s: %s", utt.id, reason)
    if on_skip is not None:
        on_skip(utt, reason)
