"""Embedding an archive's recordings, in this process or in worker processes.

The embedder's work is a long series of small matrix products (one per GRU step over a
batch of windows). Splitting each product over threads gains little — the threads
synchronise at every step — and on a machine shared with another busy process those
synchronisations stall behind the other process, so a two-thread build there ran
several times *slower* than a one-thread build. Independent worker processes with
one thread each share nothing per step: on an idle machine they use every core, and
on a busy one each simply gets its share of CPU time.

A unit of work is one chunk of one recording (at most ``CHUNK_SECONDS`` plus an
overlap), so a single long recording is spread over the workers as well. Workers load
the embedder from its file and check its fingerprint; results come back in archive
order, so the index is the same whatever the number of workers.

The calling process is one of the ``workers``: it starts one fewer process and, while
it waits for a chunk, embeds chunks not yet handed to a worker (the pool gets two per
worker at a time). A worker needs seconds to
start (importing torch), as long as embedding a minute of speech; the calling process
has the embedder already and works through that time instead of waiting.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..audio import audio_info, load_audio
from ..errors import AudioError, ModelFileError
from ..manifest import Utterance
from .embedding import Embedder
from .segments import SegmentConfig, Span, candidate_segments

CHUNK_SECONDS = 600.0  # long recordings are embedded in chunks of this length
IN_FLIGHT_PER_WORKER = 3  # chunks queued per worker: keeps workers busy, bounds memory
# Starting a worker (importing torch, loading the embedder) costs a few seconds, as
# much as embedding about a minute of speech: smaller archives are embedded here.
WORKER_MIN_SECONDS = 120.0


@dataclass(frozen=True)
class Chunk:
    """Seconds ``[start, end)`` of ``audio``; windows starting at or after ``keep_before``
    (seconds from ``start``) belong to the next chunk, which sees them whole."""

    audio: str
    start: float
    end: float
    keep_before: float


@dataclass(frozen=True)
class Embedded:
    """One recording's candidate segments (seconds in the audio file) and their unit
    vectors ``(segments, dim)``; or why it could not be read."""

    spans: list[Span]
    vectors: np.ndarray
    seconds: float
    error: str | None = None


def recording_chunks(utt: Utterance, config: SegmentConfig) -> tuple[list[Chunk], float]:
    """The chunks of one recording and its duration in seconds."""
    info = audio_info(utt.audio)
    if info.frames == 0:  # as transcribe says; otherwise it is "indexed" with nothing in it
        raise AudioError(f"{utt.audio}: the file holds no audio samples; remove it from the "
                         "input")
    begin = utt.offset
    end = info.duration if utt.duration is None else min(info.duration, begin + utt.duration)
    overlap = config.longest + 2 * config.pad
    chunks, start = [], begin
    while start < end - 1e-6:
        stop = min(start + CHUNK_SECONDS + overlap, end)
        last = stop >= end - 1e-6
        chunks.append(Chunk(utt.audio, start, stop, float("inf") if last else CHUNK_SECONDS))
        start += CHUNK_SECONDS
    return chunks, end - begin


def embed_chunk(embedder: Embedder, chunk: Chunk, config: SegmentConfig,
                ) -> tuple[list[Span], np.ndarray]:
    """Candidate segments of one chunk (seconds in the file) and their vectors."""
    wave = load_audio(chunk.audio, offset=chunk.start, duration=chunk.end - chunk.start)
    keep = [s for s in candidate_segments(wave, config) if s.start < chunk.keep_before]
    if not keep:
        return [], np.zeros((0, embedder.dim), np.float32)
    vectors = embedder.embed_spans(embedder.features(wave), [(s.start, s.end) for s in keep])
    return [Span(round(s.start + chunk.start, 3), round(s.end + chunk.start, 3))
            for s in keep], vectors


def embed_recording(embedder: Embedder, utt: Utterance, config: SegmentConfig,
                    ) -> tuple[list[Span], np.ndarray, float]:
    """All candidate segments of one recording → (spans in seconds of the audio file,
    unit vectors ``(segments, dim)``, seconds of audio). Long files go in chunks."""
    chunks, seconds = recording_chunks(utt, config)
    parts = [embed_chunk(embedder, c, config) for c in chunks]
    return _joined(parts, seconds, embedder.dim)


def embed_recordings(embedder: Embedder, utts: Sequence[Utterance], config: SegmentConfig,
                     workers: int = 1, embedder_file: str | os.PathLike | None = None,
                     ) -> Iterator[tuple[Utterance, Embedded]]:
    """``(recording, Embedded)`` for each of ``utts``, in order. With ``workers`` > 1
    the chunks are embedded by that many one-thread processes, this one included; the
    others load ``embedder_file`` (it must hold ``embedder``)."""
    if workers <= 1 or not _at_least_seconds(utts, WORKER_MIN_SECONDS):
        for utt in utts:
            yield utt, _embedded_here(embedder, utt, config)
        return
    if embedder_file is None:
        raise ValueError("worker processes need the embedder's file")
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_start_worker,
                             initargs=(str(embedder_file), embedder.fingerprint())) as pool:
        scheduler = _Scheduler(pool, embedder, config, slots=2 * (workers - 1))
        try:
            yield from _in_order(scheduler, utts, config, workers * IN_FLIGHT_PER_WORKER,
                                 embedder.dim)
        finally:
            scheduler.close()


def _at_least_seconds(utts: Sequence[Utterance], seconds: float) -> bool:
    """Whether ``utts`` hold at least ``seconds`` of audio (reads headers until sure)."""
    total = 0.0
    for utt in utts:
        try:
            info = audio_info(utt.audio)
        except AudioError:
            continue  # reported when its turn comes
        total += max(0.0, min(info.duration - utt.offset, utt.duration or float("inf")))
        if total >= seconds:
            return True
    return False


@dataclass
class _Job:
    """One chunk; ``result`` is set once it is known, by whichever process embedded it."""

    chunk: Chunk
    future: Future | None = None  # None: not handed to a worker (yet)
    result: object = None
    done: bool = False


class _Scheduler:
    """Hands chunks to the pool in archive order, at most ``slots`` at a time (one
    running and one queued per worker), and the others to this process while it waits.
    A chunk a worker finishes frees its slot at once (a callback in the pool's thread
    hands out the next waiting chunk): a worker never idles while this process is busy
    with a chunk of its own. Nothing is taken back from the pool, so nothing is ever
    cancelled there."""

    def __init__(self, pool: ProcessPoolExecutor, embedder: Embedder, config: SegmentConfig,
                 slots: int):
        self.pool, self.embedder, self.config, self.slots = pool, embedder, config, slots
        self.waiting: deque[_Job] = deque()  # handed to nobody yet, in archive order
        self.in_pool = 0
        self.closed = False  # no more chunks for the pool (it is shutting down or broken)
        self.lock = threading.RLock()  # the pool's thread runs _freed

    def add(self, jobs: list[_Job]) -> None:
        with self.lock:
            self.waiting.extend(jobs)
            self._feed()

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def finish(self, job: _Job) -> None:
        """Until ``job`` is done: take its worker's result, or embed it here if nobody
        has it; while a worker has it, embed the next chunk nobody has."""
        while not job.done:
            with self.lock:
                if job.future is None:
                    self.waiting.remove(job)
                    mine = job
                elif job.future.done():
                    job.result, job.done = job.future.result(), True
                    continue
                else:
                    mine = self.waiting.popleft() if self.waiting else None
            if mine is not None:
                self._embed(mine)
            else:
                wait([job.future], return_when=FIRST_COMPLETED)

    def _feed(self) -> None:
        """With the lock held: fill the pool's free slots from the waiting chunks."""
        while self.waiting and self.in_pool < self.slots and not self.closed:
            job = self.waiting.popleft()
            try:
                job.future = self.pool.submit(_worker_chunk, job.chunk, self.config)
            except Exception:  # a broken pool: this process embeds what is left
                self.waiting.appendleft(job)
                self.closed = True
                return
            self.in_pool += 1
            job.future.add_done_callback(self._freed)

    def _freed(self, _future: Future) -> None:
        with self.lock:
            self.in_pool -= 1
            self._feed()

    def _embed(self, job: _Job) -> None:
        """Embed ``job`` in this process, on one thread as a worker does."""
        import torch
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            job.result, job.done = _chunk_or_error(self.embedder, job.chunk, self.config), True
        finally:
            torch.set_num_threads(threads)


def _in_order(scheduler: _Scheduler, utts, config, limit: int, dim: int):
    """Read chunks ahead (up to ``limit`` not yet returned) and yield recordings in order."""
    pending: deque[tuple[Utterance, list[_Job] | str, float]] = deque()
    queued = 0
    for utt in utts:
        try:
            chunks, seconds = recording_chunks(utt, config)
            jobs: list[_Job] | str = [_Job(c) for c in chunks]
            scheduler.add(jobs)
        except AudioError as e:
            jobs, seconds = str(e), 0.0
        pending.append((utt, jobs, seconds))
        queued += _count(jobs)
        while pending and queued >= limit:
            queued -= _count(pending[0][1])
            yield _collect(scheduler, *pending.popleft(), dim)
    while pending:
        yield _collect(scheduler, *pending.popleft(), dim)


def _count(jobs) -> int:
    return len(jobs) if isinstance(jobs, list) else 0


def _collect(scheduler: _Scheduler, utt: Utterance, jobs, seconds: float, dim: int,
             ) -> tuple[Utterance, Embedded]:
    if isinstance(jobs, str):
        return utt, Embedded([], np.zeros((0, dim), np.float32), 0.0, jobs)
    for job in jobs:
        scheduler.finish(job)
    parts = [job.result for job in jobs]
    errors = [p for p in parts if isinstance(p, str)]
    if errors:
        return utt, Embedded([], np.zeros((0, dim), np.float32), 0.0, errors[0])
    spans, vectors, seconds = _joined(parts, seconds, dim)
    return utt, Embedded(spans, vectors, seconds)


def _embedded_here(embedder: Embedder, utt: Utterance, config: SegmentConfig) -> Embedded:
    try:
        return Embedded(*embed_recording(embedder, utt, config))
    except AudioError as e:
        return Embedded([], np.zeros((0, embedder.dim), np.float32), 0.0, str(e))


def _joined(parts, seconds: float, dim: int) -> tuple[list[Span], np.ndarray, float]:
    spans = [s for p in parts for s in p[0]]
    vectors = [p[1] for p in parts if len(p[1])]
    return spans, (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), \
        seconds


_WORKER_EMBEDDER: Embedder | None = None


def _start_worker(embedder_file: str, fingerprint: str) -> None:
    """Worker set-up: one thread, the embedder the index was started with, and a quick
    exit. A worker's results are written to the pipe as each chunk finishes, so nothing
    is lost by skipping the interpreter's teardown at exit, which with torch loaded took
    1.1-1.5 s of every build's end (0.05 s without)."""
    global _WORKER_EMBEDDER
    import atexit
    import torch
    from .embedding import load_embedder
    torch.set_num_threads(1)
    embedder = load_embedder(Path(embedder_file))
    if embedder.fingerprint() != fingerprint:
        raise ModelFileError(f"{embedder_file}: changed while the index was being built")
    _WORKER_EMBEDDER = embedder
    atexit.register(os._exit, 0)  # once set up; runs first (last in, first out)


def _worker_chunk(chunk: Chunk, config: SegmentConfig):
    """In a worker: :func:`embed_chunk`, or the message of an :class:`AudioError`
    (returned rather than raised, so it crosses the process boundary as plain text)."""
    return _chunk_or_error(_WORKER_EMBEDDER, chunk, config)


def _chunk_or_error(embedder: Embedder, chunk: Chunk, config: SegmentConfig):
    try:
        return embed_chunk(embedder, chunk, config)
    except AudioError as e:
        return str(e)
