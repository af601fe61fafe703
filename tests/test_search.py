import json

import numpy as np
import pytest
from typer.testing import CliRunner

from asrkit.audio import write_audio
from asrkit.search.dtw import (DtwCollection, cosine_cost, dtw_distance, pairwise_dtw,
                        subsequence_dtw)
from asrkit.search.embedding import load_embedder
from asrkit.errors import AudioError, ConfigError
from asrkit.search.index import build_index
from asrkit.manifest import Utterance, write_manifest
from asrkit.search.query import Hit, Query, merge_overlapping, parse_span, search
from asrkit.search.evaluation import (average_precision, evaluate_dtw, evaluate_embeddings,
                                load_word_segments, query_by_example, same_different_ap)

from _speech import VOICES, WORDS, make_archive, synth_word

FILES = [["umbrella", "computer", "garden"], ["elephant", "basket", "yellow"],
         ["tomorrow", "window", "pocket"], ["dinosaur", "garden", "umbrella"],
         ["basket", "computer", "tomorrow"]]
TOLERANCE = 0.3  # seconds between a hit's start and the word's true start


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """An archive in one voice, indexed with the packaged embedder."""
    root = tmp_path_factory.mktemp("search")
    occurrences = make_archive(root / "archive", FILES, VOICES[0])
    build_index(root / "archive", root / "index")
    return root / "index", occurrences


def spoken_words(folder, words, voices) -> list[Utterance]:
    """Each word in each voice, one file apiece, listed in ``folder/words.jsonl``."""
    utts = []
    for w in words:
        for v in voices:
            path = folder / f"{w}-{v.replace('+', '_')}.wav"
            write_audio(path, synth_word(w, v))
            utts.append(Utterance(path.stem, str(path), w))
    write_manifest(folder / "words.jsonl", utts)
    return utts


def correct(hit: Hit, word: str, occurrences) -> bool:
    return any(o.word == word and o.file.name == hit.source and abs(o.start - hit.start)
               < TOLERANCE for o in occurrences)


def test_spoken_query_in_another_voice_finds_the_word(indexed):
    index, occurrences = indexed
    queries = [Query(w, synth_word(w, VOICES[1])) for w in WORDS]
    results = search(index, queries, top=3)
    found = [correct(hits[0], q.name, occurrences) for q, hits in zip(queries, results)]
    assert sum(found) >= 8, found


def test_query_cut_from_the_archive_finds_itself(indexed):
    index, occurrences = indexed
    o = next(o for o in occurrences if o.word == "yellow")  # occurs once
    query = parse_span(f"{o.file}:{o.start:.3f}-{o.end:.3f}")
    hit = search(index, [query], top=1)[0][0]
    assert hit.source == o.file.name and abs(hit.start - o.start) < TOLERANCE
    assert hit.score > 0.75  # windows on a 0.1 s grid never match its edges exactly


def test_hits_are_merged_sorted_and_thresholded(indexed):
    index, _ = indexed
    hits = search(index, [Query("garden", synth_word("garden", VOICES[2]))], top=8)[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for i, a in enumerate(hits):  # no two hits overlap in the same file
        assert not any(a.source == b.source and a.start < b.end and b.start < a.end
                       for b in hits[i + 1:])
    cut = (hits[0].score + hits[-1].score) / 2
    kept = search(index, [Query("garden", synth_word("garden", VOICES[2]))], top=8,
                  threshold=cut)[0]
    assert kept and all(h.score >= cut for h in kept) and len(kept) < len(hits)


def test_fused_examples_find_the_word(indexed):
    index, occurrences = indexed
    examples = [Query(f"pocket/{v}", synth_word("pocket", v)) for v in VOICES[1:4]]
    results = search(index, examples, top=2, fuse=True)
    assert len(results) == 1 and correct(results[0][0], "pocket", occurrences)


def test_dtw_rerank_keeps_the_right_hit_and_tightens_times(indexed):
    index, occurrences = indexed
    query = Query("elephant", synth_word("elephant", VOICES[1]))
    hit = search(index, [query], top=3, rerank="dtw")[0][0]
    assert correct(hit, "elephant", occurrences)
    truth = next(o for o in occurrences if o.word == "elephant")
    assert abs(hit.end - truth.end) < TOLERANCE


def test_bad_queries_are_refused(indexed, tmp_path):
    index, _ = indexed
    with pytest.raises(ConfigError):
        parse_span("talk.wav:1.5")
    with pytest.raises(ConfigError):
        search(index, [], top=3)
    with pytest.raises(ConfigError):
        search(index, [Query("q", synth_word("garden"))], top=0)
    (tmp_path / "q.wav").write_text("no audio here")
    with pytest.raises(AudioError):
        search(index, [tmp_path / "q.wav"])


def test_merge_overlapping_keeps_the_best_of_each_cluster():
    hits = [Hit("q", "a", "a.wav", 1.0, 1.5, 0.7, 1), Hit("q", "a", "a.wav", 1.2, 1.8, 0.9, 2),
            Hit("q", "a", "a.wav", 1.9, 2.3, 0.5, 3), Hit("q", "b", "b.wav", 1.0, 1.5, 0.8, 4)]
    assert [h.segment for h in merge_overlapping(hits)] == [2, 4, 3]


def test_cli_search_prints_json_lines(indexed, tmp_path):
    from asrkit.cli.main import app
    index, occurrences = indexed
    query = tmp_path / "q.wav"
    write_audio(query, synth_word("dinosaur", VOICES[1]))
    short = CliRunner().invoke(app, ["search", str(index), str(query), "--top", "2", "--json"])
    assert short.exit_code == 0, short.output
    lines = [json.loads(line) for line in short.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["rank"] == 1
    assert {"query", "source", "audio", "start", "end", "score"} <= set(lines[0])
    spelled = CliRunner().invoke(app, ["search", "query", str(index), str(query), "--top", "2",
                                       "--json"])
    assert spelled.stdout == short.stdout  # `search INDEX ...` is short for `search query ...`
    bad = CliRunner().invoke(app, ["search", str(tmp_path / "no-index"), str(query)])
    assert bad.exit_code == 2 and "error:" in bad.output  # not an index: usage error


def test_cli_search_eval_reports_embeddings_and_dtw(tmp_path):
    from asrkit.cli.main import app
    spoken_words(tmp_path, WORDS[:2], VOICES[:2])
    r = CliRunner().invoke(app, ["search", "eval", str(tmp_path / "words.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)
    assert [x["method"] for x in results] == ["embedding", "dtw"]
    assert all(x["queries"] == 4 and 0 <= x["mean_average_precision"] <= 1 for x in results)


def test_cli_search_eval_under_conditions(tmp_path):
    """A row per condition and method; clean equals no condition; seeded, so a second
    run hears the same audio; the plot is a PNG; an index cannot take a condition."""
    from asrkit.cli.main import app
    spoken_words(tmp_path, WORDS[:2], VOICES[:2])
    words = str(tmp_path / "words.jsonl")
    runner = CliRunner()
    plain = json.loads(runner.invoke(app, ["search", "eval", words, "--json"]).stdout)
    args = ["search", "eval", words, "--condition", "clean,8k,noise0", "--json"]
    r = runner.invoke(app, args + ["--plot", str(tmp_path / "ap.png")])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["condition"], x["method"]) for x in rows] == [
        (c, m) for c in ("clean", "8k", "noise0") for m in ("embedding", "dtw")]
    strip = lambda x: {k: v for k, v in x.items() if k != "query_seconds"}  # noqa: E731
    assert [strip(x) for x in rows[:2]] == [strip(x) for x in plain]
    assert [strip(x) for x in rows] == [strip(x) for x in json.loads(
        runner.invoke(app, args).stdout)]
    assert (tmp_path / "ap.png").read_bytes()[:4] == b"\x89PNG"
    table = runner.invoke(app, ["search", "eval", words, "--condition", "8k", "--no-dtw"])
    assert table.exit_code == 0 and table.stdout.splitlines()[-1].split()[:2] == [
        "8k", "embedding"]
    bad = runner.invoke(app, ["search", "eval", words, "--index", str(tmp_path),
                              "--condition", "8k"])
    assert bad.exit_code != 0 and "--condition" in bad.output


def test_word_segments_under_a_condition_are_changed_before_trimming(tmp_path):
    """8 kHz: the segment keeps its length and loses what lies above 4 kHz."""
    from asrkit.conditions import parse_conditions
    utts = spoken_words(tmp_path, WORDS[:1], VOICES[:2])
    clean = load_word_segments(utts, trim=False)
    (narrow,) = parse_conditions("8k")
    heard = load_word_segments(utts, trim=False, condition=narrow)
    for a, b in zip(clean, heard):
        assert len(a.wave) == len(b.wave)
        high = lambda w: np.abs(np.fft.rfft(w)[len(w) // 4 + 50:]).sum()  # noqa: E731
        assert high(b.wave) < 0.05 * high(a.wave)


def test_cli_index_build_info_and_remove(tmp_path):
    from asrkit.cli.index import app
    make_archive(tmp_path / "a", FILES[:2], VOICES[0])
    runner = CliRunner()
    out = tmp_path / "idx"
    r = runner.invoke(app, ["build", str(tmp_path / "a"), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["indexed"] == 2
    r = runner.invoke(app, ["remove", str(out), "rec00.wav"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(out), "--json"])
    assert json.loads(r.output)["recordings"] == 1
    r = runner.invoke(app, ["remove", str(out), "nope.wav"])
    assert r.exit_code == 2 and "error:" in r.output


# --- DTW --------------------------------------------------------------------------

def reference_dtw(cost):
    """Textbook O(n·m) DTW with path lengths, for checking the compiled one."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1))
    acc[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = min([(acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]),
                        (acc[i, j - 1], steps[i, j - 1])], key=lambda x: x[0])
            acc[i, j], steps[i, j] = prev[0] + cost[i - 1, j - 1], prev[1] + 1
    return acc[n, m] / steps[n, m]


def test_dtw_agrees_with_the_textbook_version():
    rng = np.random.default_rng(1)
    for n, m in [(1, 1), (5, 9), (17, 12)]:
        a, b = rng.normal(size=(n, 6)), rng.normal(size=(m, 6))
        assert dtw_distance(a, b) == pytest.approx(reference_dtw(cosine_cost(a, b)), abs=1e-6)


def test_dtw_properties():
    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=(int(n), 5)) for n in rng.integers(3, 30, size=6)]
    d = pairwise_dtw(seqs)
    assert np.allclose(np.diag(d), 0, atol=1e-6) and np.allclose(d, d.T, atol=1e-6)
    stretched = np.repeat(seqs[0], 2, axis=0)  # time warping costs nothing
    assert dtw_distance(seqs[0], stretched) == pytest.approx(0, abs=1e-6)
    assert np.allclose(DtwCollection(seqs).distances(seqs[1]), d[1], atol=1e-6)


def test_subsequence_dtw_finds_the_planted_stretch():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(12, 8))
    target = rng.normal(size=(200, 8))
    target[70:94] = np.repeat(query, 2, axis=0) + 0.01 * rng.normal(size=(24, 8))
    match = subsequence_dtw(query, target)
    assert abs(match.start - 70) <= 1 and abs(match.end - 94) <= 1 and match.cost < 0.01


# --- evaluation -------------------------------------------------------------------

def test_average_precision_by_hand():
    # ranking: hit, miss, hit → precisions 1 and 2/3
    assert average_precision(np.array([0.1, 0.2, 0.3]), np.array([True, False, True])) == \
        pytest.approx((1 + 2 / 3) / 2)
    d = np.array([[0, 1, 5], [1, 0, 4], [5, 4, 0]], float)
    assert same_different_ap(d, ["a", "a", "b"]) == 1.0
    mean_ap, p10, queries = query_by_example(d, ["a", "a", "b"])
    assert (mean_ap, queries) == (1.0, 2) and p10 == pytest.approx(0.5)


def test_eval_ranks_words_above_chance(tmp_path):
    utts = spoken_words(tmp_path, WORDS[:4], VOICES[:3])
    words = load_word_segments(utts)
    chance = 2 / 11  # two other examples of the word among eleven
    for result in (evaluate_dtw(words), evaluate_embeddings(load_embedder(),
                                                            words)):
        assert result.queries == 12 and result.mean_average_precision > 2 * chance
        assert result.query_seconds > 0
