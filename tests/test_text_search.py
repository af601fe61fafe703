"""Search by typed word: the keyword Viterbi against a plain reference, planted words
found by a tiny model that really learned them (and by synthesised examples), kept
posteriors equal to fresh ones, rank fusion, the CLI and its refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asrkit.asr.alignment import text_labels
from asrkit.cli.main import app
from asrkit.errors import ConfigError, VocabularyError
from asrkit.search.index import SearchIndex, build_index
from asrkit.search.keywords import augmented_states, spot
from asrkit.search.posteriors import FILE as POSTERIORS_FILE
from asrkit.search.query import Hit
from asrkit.search.text_query import (TextQueryConfig, TextSearcher, fuse_scores,
                                      search_text)
from asrkit.text import Vocabulary
from test_align import tone_model, tone_recording  # noqa: F401 (a fixture, and its audio)

VOCAB = Vocabulary(tuple(" ABCD"))
FILES = [["DAB", "C", "BB", "DAB"], ["CC", "A", "BD"], ["BB", "DAB", "CA"]]


def reference_best_ends(lp: np.ndarray, ids: list[int]) -> np.ndarray:
    """For each end frame t, the best score of the word's path over any lp[a:t+1] that
    starts on its first label and ends on its last: every window scored on its own."""
    ext, jump = augmented_states(tuple(ids))
    out = np.full(len(lp), -np.inf)
    for a in range(len(lp)):
        alpha = np.full(len(ext), -np.inf)
        alpha[0] = lp[a, ext[0]]
        out[a] = max(out[a], alpha[-1])
        for t in range(a + 1, len(lp)):
            prev = alpha.copy()
            for s in range(len(ext)):
                best = prev[s]
                if s >= 1:
                    best = max(best, prev[s - 1])
                if s >= 2 and jump[s]:
                    best = max(best, prev[s - 2])
                alpha[s] = best + lp[t, ext[s]]
            out[t] = max(out[t], alpha[-1])
    return out


def test_keyword_viterbi_equals_scoring_every_window_apart():
    from asrkit.search.keywords import _end_scores
    rng = np.random.default_rng(0)
    for trial in range(20):
        ids = list(rng.integers(1, 5, int(rng.integers(1, 4))))
        lp = torch.randn(int(rng.integers(4, 14)), 5).mul(3).log_softmax(-1).numpy()
        ext, jump = augmented_states(tuple(ids))
        ours, _ = _end_scores(lp.astype(np.float32), ext, jump)
        np.testing.assert_allclose(ours, reference_best_ends(lp, ids), rtol=1e-4, atol=1e-4)


def planted_log_probs(frame_ids: list[int], seed: int = 0) -> np.ndarray:
    """Log-probs ``(frames, vocab)`` of a confident model that heard ``frame_ids``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(frame_ids), len(VOCAB))).astype(np.float32)
    logits[np.arange(len(frame_ids)), frame_ids] += 7.0
    return torch.from_numpy(logits).log_softmax(-1).numpy()


def test_spot_finds_each_planted_word_at_its_frames_and_nothing_else_as_well():
    a, b, c, d = VOCAB.encode("ABCD")
    sp = VOCAB.space_id
    # "DAB" at frames 3-8 and 20-24; "CAB" (one letter off) at 12-16.
    frames = [0, 0, 0, d, d, 0, a, 0, b, 0, sp, 0, c, 0, a, 0, b, 0, sp, 0,
              d, a, a, 0, b, 0, 0]
    lp = planted_log_probs(frames)
    matches = spot(lp, text_labels(VOCAB, "dab"), frame_seconds=0.02)
    assert [(m.start, m.end) for m in matches[:2]] == [(3, 9), (20, 25)] or \
        [(m.start, m.end) for m in matches[:2]] == [(20, 25), (3, 9)]
    assert min(m.score for m in matches[:2]) > -0.2  # near certain: log p ~ 0 per label
    assert all(m.score < -1 for m in matches[2:])  # the rest is what the model did not hear


def test_a_word_heard_inside_a_longer_one_is_charged_only_when_whole_words_are_asked():
    a, b, c, d = VOCAB.encode("ABCD")
    sp = VOCAB.space_id
    # "DAB" as a word (between separators), then inside "DABC" (a letter follows).
    frames = [0, d, 0, a, 0, b, 0, sp, 0, 0, d, 0, a, 0, b, c, 0, 0]
    lp = planted_log_probs(frames)
    labels = text_labels(VOCAB, "dab")
    parts = spot(lp, labels, 0.02)
    whole = spot(lp, labels, 0.02, separator=sp)
    assert sorted((m.start, m.end) for m in parts[:2]) == [(1, 6), (10, 15)]
    word, inside = (next(m for m in whole if m.start == f) for f in (1, 10))
    assert word.score == pytest.approx(parts[0].score if parts[0].start == 1
                                       else parts[1].score)  # nothing charged
    assert inside.score < word.score - 1.0 and whole[0] == word


def test_fusion_of_a_list_with_itself_keeps_it_and_a_region_both_found_gains():
    hits = [Hit("q", f"s{i % 3}", "a.wav", float(i), i + 0.5, 1 - i / 10, i) for i in range(8)]
    same = fuse_scores([hits, hits], "q")
    assert [(h.source, h.start, h.score) for h in same] == \
        [(h.source, h.start, pytest.approx(h.score)) for h in hits]
    other = [Hit("q", "s9", "b.wav", 0.0, 1.0, 0.9, 99), replace(hits[5], start=5.2, score=0.8)]
    fused = fuse_scores([hits, other], "q")
    assert (fused[0].source, fused[0].start) == (hits[5].source, hits[5].start)  # its times
    assert fused[0].score == pytest.approx((hits[5].score + 0.8) / 2)
    assert len(fused) == len(hits) + 1  # the overlapping pair is one region


@pytest.fixture(scope="module")
def tone_index(tone_model, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """Three recordings of tone words (FILES) and their index (no acoustic model)."""
    root = tmp_path_factory.mktemp("tone-archive")
    spans = {}
    for n, words in enumerate(FILES):
        path = root / "audio" / f"rec{n}.wav"
        path.parent.mkdir(exist_ok=True)
        spans[str(path.resolve())] = list(zip(words, tone_recording(path, words, seed=n)))
    build_index(root / "audio", root / "index")
    return root / "index", spans


def right(hit, spans, word) -> bool:
    return any(w == word and hit.start < e and s < hit.end
               for w, (s, e) in spans[str(hit.audio)])


def test_kws_finds_the_planted_words_first(tone_model, tone_index):  # noqa: F811
    run, _ = tone_model
    index, spans = tone_index
    config = TextQueryConfig("kws", asr_model=str(run))
    for word in ("DAB", "BB", "CC"):
        n = sum(w == word for ws in spans.values() for w, _ in ws)
        [hits] = search_text(index, [word.lower()], top=n + 2, config=config)
        assert all(right(h, spans, word) for h in hits[:n]), (word, hits)
        assert all(h.query == word.lower() for h in hits)  # named as typed


def test_kept_posteriors_give_what_fresh_ones_give(tone_model, tone_index, tmp_path):  # noqa: F811
    run, _ = tone_model
    index, _ = tone_index
    config = TextQueryConfig("kws", asr_model=str(run))
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    (copy / POSTERIORS_FILE).unlink(missing_ok=True)
    fresh = search_text(copy, ["DAB", "A"], top=5, config=config)
    assert (copy / POSTERIORS_FILE).is_file()
    with SearchIndex(copy) as idx:
        searcher = TextSearcher(idx, config)
        computed = [p.source for p in searcher.posteriors()]
    again = search_text(copy, ["DAB", "A"], top=5, config=config)
    assert sorted(computed) == ["rec0.wav", "rec1.wav", "rec2.wav"]
    for f, a in zip(fresh, again):  # float16 storage: same hits, scores to 1e-2
        assert [(h.source, h.start, h.end) for h in f] == [(h.source, h.start, h.end) for h in a]
        np.testing.assert_allclose([h.score for h in f], [h.score for h in a], atol=1e-2)


def test_cli_text_search_prints_json_lines(tone_model, tone_index):  # noqa: F811
    run, _ = tone_model
    index, spans = tone_index
    result = CliRunner().invoke(app, ["search", str(index), "--text", "DAB", "--method",
                                      "kws", "--asr-model", str(run), "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {"query", "source", "audio", "start", "end", "score"} <= set(rows[0])
    assert all(right(Hit("DAB", r["source"], r["audio"], r["start"], r["end"], r["score"], -1),
                     spans, "DAB") for r in rows)
    # --threshold keeps exactly the hits scoring at least it.
    cut = (rows[0]["score"] + rows[-1]["score"]) / 2
    kept = CliRunner().invoke(app, ["search", str(index), "--text", "DAB", "--method", "kws",
                                    "--asr-model", str(run), "--json", "-k", "3",
                                    "--threshold", str(cut)])
    assert kept.exit_code == 0, kept.output
    where = [(r["source"], r["start"], r["end"])  # scores of kept posteriors may differ by 1e-4
             for r in (json.loads(line) for line in kept.stdout.splitlines() if line.startswith("{"))]
    assert where == [(r["source"], r["start"], r["end"]) for r in rows if r["score"] >= cut]


@pytest.mark.parametrize("args, code, says", [
    (["--text", "  ", "--method", "synth"], 2, "empty"),
    (["--text", "DAX", "--method", "kws", "--asr-model", "RUN"], 1, "cannot write 'X'"),
    (["--text", "DAB", "--method", "kws"], 2, "without an acoustic model"),
    (["--text", "DAB", "--method", "fused"], 2, "without an acoustic model"),
    (["--text", "DAB", "--method", "guess"], 2, "unknown typed-search method"),
    (["some.wav", "--text", "DAB", "--method", "synth"], 2, "not both"),
    (["--text", "DAB", "--method", "synth", "--threshold", "auto"], 2, "give --text a number"),
])
def test_cli_text_search_refuses_bad_input_in_one_line(  # noqa: F811 (fixture)
        tone_model, tone_index, args, code, says):
    run, _ = tone_model
    index, _ = tone_index
    args = [str(run) if a == "RUN" else a for a in args]
    result = CliRunner().invoke(app, ["search", str(index), *args])
    assert result.exit_code == code, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and says in line


def test_library_refuses_what_the_cli_refuses(tone_model, tone_index):  # noqa: F811
    run, _ = tone_model
    index, _ = tone_index
    with pytest.raises(ConfigError):
        search_text(index, [], config=TextQueryConfig("kws", asr_model=str(run)))
    with pytest.raises(VocabularyError):
        search_text(index, ["hello"], config=TextQueryConfig("kws", asr_model=str(run)))
    with pytest.raises(ConfigError):
        TextQueryConfig("nearest")


def test_synthesised_examples_find_planted_words(synth_archive_spans, tmp_path):
    """espeak-ng says each typed word; the examples' mean embedding finds it."""
    folder = __import__("pathlib").Path(synth_archive_spans[0].file).parents[1]
    build_index(folder / "recordings.jsonl", tmp_path / "index")
    config = TextQueryConfig("synth", voices=("espeak-ng:en-us", "espeak-ng:en-gb+m3"))
    words = sorted({s.word for s in synth_archive_spans})
    results = search_text(tmp_path / "index", words, top=1, config=config)
    found = 0
    for word, [top] in zip(words, results):
        found += any(s.word == word and s.file == top.audio and top.start < s.end
                     and s.start < top.end for s in synth_archive_spans)
    assert found >= 0.8 * len(words), (found, len(words))


def test_an_index_built_with_a_recogniser_spots_with_it_unasked(  # noqa: F811 (fixture)
        tone_model, tone_index, tmp_path):
    from asrkit.search.segments import SegmentConfig
    run, _ = tone_model
    _, spans = tone_index
    audio = __import__("pathlib").Path(next(iter(spans))).parent
    build_index(audio, tmp_path / "index",
                segment_config=SegmentConfig(kind="both", asr_model=str(run)))
    with SearchIndex(tmp_path / "index") as idx:
        searcher = TextSearcher(idx)  # method auto, no model named
        assert searcher.method == "kws"
        hits = searcher.search("DAB", top=3)
    assert all(right(h, spans, "DAB") for h in hits)


def test_a_typed_phrase_is_found_where_its_words_follow_each_other(  # noqa: F811 (fixture)
        tone_model, tone_index):
    run, _ = tone_model
    index, spans = tone_index
    [hits] = search_text(index, ["DAB C"], top=1,
                         config=TextQueryConfig("kws", asr_model=str(run)))
    [words] = [ws for ws in spans.values() if [w for w, _ in ws][:2] == ["DAB", "C"]]
    (_, (start, _)), (_, (_, end)) = words[0], words[1]
    assert hits[0].start < start + 0.1 and hits[0].end > end - 0.1, (hits, words)
