"""Term-weighted value and false-alarm thresholds (asrkit.search.detection), and
`search calibrate` / `search eval --index` / `search --threshold auto` from the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from asrkit.errors import ConfigError
from asrkit.search.detection import (BETA, Detection, Occurrence, average_precision_of_hits,
                                     false_alarms_per_hour, maximum_twv, recall,
                                     score_detections, term_weighted_value,
                                     threshold_for_false_alarms, twv_curve)

from conftest import TINY_VOICES, require_espeak

HOUR = 3600.0
# Two terms in an hour of audio: A said twice, B once.
TRUTH = [Occurrence("A", "r1", 10.0, 10.5), Occurrence("A", "r2", 50.0, 50.6),
         Occurrence("B", "r1", 20.0, 20.4)]


def test_hand_computed_values():
    found = [Detection("A", "r1", 10.1, 10.6, 0.9),  # correct
             Detection("A", "r1", 30.0, 30.5, 0.8),  # false alarm (nothing there)
             Detection("B", "r1", 20.0, 20.4, 0.7),  # correct
             Detection("A", "r2", 50.0, 50.5, 0.6)]  # correct
    s = score_detections(found, TRUTH, HOUR)
    assert s.terms == ("A", "B") and s.true_counts.tolist() == [2, 1]
    assert s.correct.tolist() == [True, False, True, True]  # best score first
    fa = BETA / (HOUR - 2)  # one false alarm of A, among 3598 non-target trials
    # θ = 0.75: A found once (P_miss 1/2) with one false alarm, B missed (P_miss 1).
    assert term_weighted_value(s, 0.75) == pytest.approx(1 - ((0.5 + fa) + 1) / 2)
    # θ = 0.6: everything found, one false alarm.
    assert term_weighted_value(s, 0.6) == pytest.approx(1 - fa / 2)
    # θ = 0.85: only A's first hit.
    assert term_weighted_value(s, 0.85) == pytest.approx(1 - (0.5 + 1) / 2)
    assert term_weighted_value(s, 0.95) == 0.0
    thresholds, values = twv_curve(s)
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert values == pytest.approx([term_weighted_value(s, t) for t in thresholds])
    assert maximum_twv(s) == (pytest.approx(1 - fa / 2), 0.6)
    assert false_alarms_per_hour(s, 0.6) == pytest.approx(0.5)  # 1 alarm, 2 terms, 1 hour
    assert recall(s, 0.75) == pytest.approx(1 / 3) and recall(s, 0.6) == 1.0
    # A: hits at ranks 1 and 3 of its list → (1 + 2/3) / 2; B: rank 1 → 1.
    assert average_precision_of_hits(s).tolist() == pytest.approx([(1 + 2 / 3) / 2, 1.0])


def test_matching_tolerance_and_one_detection_per_occurrence():
    found = [Detection("A", "r1", 10.8, 11.2, 0.9),  # midpoint 11.0: within 0.5 s of 10.5
             Detection("A", "r1", 10.0, 10.5, 0.8),  # same occurrence again: false alarm
             Detection("A", "r2", 51.0, 51.4, 0.7),  # midpoint 51.2: 0.6 s after the end
             Detection("A", "r9", 10.0, 10.5, 0.6),  # other recording
             Detection("C", "r1", 0.0, 1.0, 0.99)]  # a term never said: left out
    s = score_detections(found, TRUTH, HOUR)
    assert s.correct.tolist() == [True, False, False, False]
    assert len(s.score) == 4


def test_perfect_detector_scores_one_and_silence_zero():
    perfect = [Detection(o.term, o.recording, o.start, o.end, 0.5 + i / 10)
               for i, o in enumerate(TRUTH)]
    s = score_detections(perfect, TRUTH, HOUR)
    assert term_weighted_value(s, 0.0) == pytest.approx(1.0)
    assert maximum_twv(s) == (pytest.approx(1.0), 0.5)
    nothing = score_detections([], TRUTH, HOUR)
    assert term_weighted_value(nothing, 0.0) == 0.0
    assert maximum_twv(nothing) == (0.0, None)
    assert term_weighted_value(s, None) == 0.0


def random_case(rng, terms=5, seconds=600.0):
    truth, found = [], []
    for t in range(terms):
        for k in range(rng.integers(1, 5)):
            start = float(rng.uniform(0, seconds - 2))
            truth.append(Occurrence(f"w{t}", f"r{k % 2}", start, start + 0.5))
            if rng.random() < 0.7:
                found.append(Detection(f"w{t}", f"r{k % 2}", start, start + 0.5,
                                       float(rng.uniform(0.3, 1.0))))
        for _ in range(rng.integers(0, 4)):
            start = float(rng.uniform(0, seconds - 2))
            found.append(Detection(f"w{t}", "elsewhere", start, start + 0.5,
                                   float(rng.uniform(0.0, 0.8))))
    return truth, found, seconds


@pytest.mark.parametrize("seed", range(20))
def test_adding_a_false_alarm_never_raises_the_value(seed):
    rng = np.random.default_rng(seed)
    truth, found, seconds = random_case(rng)
    before = score_detections(found, truth, seconds)
    alarm = Detection(truth[0].term, "elsewhere", 1.0, 1.5, float(rng.uniform(0, 1)))
    after = score_detections(found + [alarm], truth, seconds)
    for threshold in [0.0, 0.2, 0.5, 0.7, 0.9, alarm.score]:
        assert term_weighted_value(after, threshold) <= term_weighted_value(before, threshold)
    assert maximum_twv(after)[0] <= maximum_twv(before)[0]
    # ...and the curve is the value at each of its thresholds.
    thresholds, values = twv_curve(after)
    assert values == pytest.approx([term_weighted_value(after, t) for t in thresholds])
    assert maximum_twv(after)[0] == pytest.approx(max(0.0, values.max()))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("per_hour", [0.0, 6.0, 30.0, 120.0])
def test_chosen_threshold_meets_the_false_alarm_target_with_the_most_recall(seed, per_hour):
    rng = np.random.default_rng(seed)
    truth, found, seconds = random_case(rng, terms=4, seconds=1800.0)
    s = score_detections(found, truth, seconds)
    if not len(s.score):
        return
    chosen = threshold_for_false_alarms(s, per_hour)
    assert false_alarms_per_hour(s, chosen) <= per_hour + 1e-9
    # No lower threshold (at any detection's score below it) meets the target with more recall.
    for lower in s.score[s.score < chosen]:
        assert false_alarms_per_hour(s, lower) > per_hour or recall(s, lower) == recall(s, chosen)


def test_threshold_direction_and_bad_targets():
    found = [Detection("A", "r1", 10.0, 10.5, 0.9), Detection("A", "x", 0.0, 0.5, 0.8),
             Detection("A", "r2", 50.0, 50.6, 0.7)]
    s = score_detections(found, TRUTH, HOUR)
    # Half an hour's worth of budget for 2 terms in 1 hour = 1 alarm allowed: keep all.
    assert threshold_for_false_alarms(s, 0.5) < 0.7
    # No alarm allowed: the threshold sits between the alarm (0.8) and the hit above it.
    assert threshold_for_false_alarms(s, 0.0) == pytest.approx(0.85)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError):
            threshold_for_false_alarms(s, bad)
    with pytest.raises(ConfigError):
        threshold_for_false_alarms(score_detections([], TRUTH, HOUR), 1.0)
    with pytest.raises(ConfigError):
        score_detections(found, TRUTH, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_selecting_terms_equals_scoring_only_them(seed):
    truth, found, seconds = random_case(np.random.default_rng(seed))
    half = ["w0", "w2", "w4"]
    picked = score_detections(found, truth, seconds).select(half)
    alone = score_detections([d for d in found if d.term in half],
                             [o for o in truth if o.term in half], seconds)
    assert picked.terms == alone.terms
    for threshold in (0.1, 0.5, 0.9):
        assert term_weighted_value(picked, threshold) == pytest.approx(
            term_weighted_value(alone, threshold))
        assert false_alarms_per_hour(picked, threshold) == false_alarms_per_hour(alone, threshold)


# --- on an indexed archive, from the command line ------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A synthetic archive with exact word spans, indexed with the packaged embedder."""
    require_espeak()
    from asrkit.search.index import build_index
    from asrkit.synth import synth_archive
    root = tmp_path_factory.mktemp("detect")
    synth_archive(["garden", "window", "basket", "yellow"], 3, root / "archive",
                  words_per_file=8, voices=TINY_VOICES[:3], seed=3, workers=1)
    build_index(root / "archive/recordings.jsonl", root / "index")
    return root


def cli(*args):
    from asrkit.cli.main import app
    return CliRunner().invoke(app, [str(a) for a in args])


def hits(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_calibration_round_trip_gives_the_threshold_of_the_judged_queries(archive, tmp_path):
    import shutil
    from asrkit.manifest import read_manifest
    from asrkit.search.detection_eval import (calibrated_threshold, judge, save_calibration,
                                              term_queries)
    words = read_manifest(archive / "archive/words.jsonl")
    index = shutil.copytree(archive / "index", tmp_path / "index")  # others need it fresh
    judged = judge(index, words, term_queries(words))
    assert judged.words == 4 and len(judged.scored.terms) == 4 and judged.skipped == 0
    assert judged.scored.true_counts.sum() == len(words) - 4  # each query's own span is out
    save_calibration(index, judged.scored)
    for per_hour in (0.0, 1.0, 100.0, 1e4):
        assert calibrated_threshold(index, per_hour) == \
            threshold_for_false_alarms(judged.scored, per_hour)


def test_cli_calibrate_then_eval_and_search_with_threshold_auto(archive, tmp_path):
    index, words = archive / "index", archive / "archive/words.jsonl"
    import shutil
    fresh = shutil.copytree(index, tmp_path / "index")  # a copy never calibrated
    from asrkit.manifest import read_manifest
    first = read_manifest(words)[0]
    span = f"{first.audio}:{first.offset:.3f}-{first.offset + first.duration:.3f}"

    refused = cli("search", fresh, "--span", span, "--threshold", "auto")
    assert refused.exit_code == 2 and "asrkit search calibrate" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert cli("search", fresh, "--span", span, "--threshold", "most").exit_code == 2
    uncalibrated = json.loads(cli("search", "eval", words, "--index", fresh, "--json").stdout)
    assert uncalibrated["atwv"] is None and -1e3 < uncalibrated["mtwv"] <= 1
    assert 0 < uncalibrated["map"] <= 1 and uncalibrated["queries"] == 4

    done = cli("search", "calibrate", fresh, words, "--false-alarms-per-hour", "30", "--json")
    assert done.exit_code == 0, done.output
    calibrated = json.loads(done.stdout)
    assert calibrated["false_alarms_per_hour"] <= 30  # met on the calibration queries
    result = cli("search", "eval", words, "--index", fresh, "--threshold", "auto",
                 "--false-alarms-per-hour", "30", "--json")
    evaluated = json.loads(result.stdout)
    assert evaluated["threshold"] == calibrated["threshold"]
    assert evaluated["atwv"] == calibrated["atwv"] <= evaluated["mtwv"]
    assert evaluated["mtwv"] == uncalibrated["mtwv"]  # calibration changes no score

    everything = hits(cli("search", fresh, "--span", span, "--top", "200", "--json"))
    auto = hits(cli("search", fresh, "--span", span, "--top", "200", "--json",
                    "--threshold", "auto", "--false-alarms-per-hour", "30"))
    theta = calibrated["threshold"]
    assert all(h["score"] >= round(theta, 4) for h in auto)
    assert auto == [h for h in everything if h["score"] >= theta - 5e-5][:len(auto)]
    assert 0 < len(auto) < len(everything)
    numeric = hits(cli("search", fresh, "--span", span, "--top", "200", "--json",
                       "--threshold", repr(theta)))
    assert numeric == auto  # --threshold auto is the calibrated number


def test_cli_eval_without_index_refuses_detection_options(archive):
    r = cli("search", "eval", archive / "archive/words.jsonl", "--threshold", "0.5")
    assert r.exit_code == 2 and "--index" in r.stderr


def test_whole_file_lines_and_the_query_s_own_recording(tmp_path):
    from asrkit.audio import write_audio
    from asrkit.manifest import Utterance
    from asrkit.search.detection_eval import _own, term_queries, word_occurrences
    write_audio(tmp_path / "yes.wav", np.zeros(8000, np.float32))
    whole = Utterance("yes-1", str(tmp_path / "yes.wav"), "yes")  # no offset/duration
    (o,) = word_occurrences([whole])
    assert (o.term, o.start, o.end) == ("YES", 0.0, 0.5)
    (q,) = term_queries([whole])
    assert _own(q, o.recording, 0.2, 0.3) and not _own(q, o.recording, 0.6, 0.9)
    assert not _own(q, str(tmp_path / "other.wav"), 0.2, 0.3)
    with pytest.raises(Exception, match="exactly one word"):
        word_occurrences([Utterance("two", whole.audio, "yes no")])


def test_cli_calibrate_refuses_what_it_cannot_judge(archive, tmp_path):
    from asrkit.manifest import read_manifest, write_manifest
    once = tmp_path / "once.jsonl"  # every word once: nothing else to find
    write_manifest(once, read_manifest(archive / "archive/words.jsonl")[:2])
    r = cli("search", "calibrate", archive / "index", once)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "at least twice" in r.stderr
    r = cli("search", "calibrate", tmp_path, archive / "archive/words.jsonl")
    assert r.exit_code == 2 and "asrkit index build" in r.stderr
