"""Text normaliser, WER / cpWER and signal metrics on hand-made inputs."""

import itertools
import math

import numpy as np
import pytest

from robust_brain.evaluation.metrics import (
    WordErrors,
    best_source_assignment,
    cp_word_errors,
    cpwer,
    pesq_wb,
    si_sdr,
    stoi,
    wer,
    word_errors,
)
from robust_brain.evaluation.normalise import normalise

SR = 16000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mr. Smith's 2 dogs!", "mister smith is 2 dogs"),
        ("The colour is twenty-five percent.", "the color is 25%"),
        ("Dr. Jones [laughs] said (quietly) HELLO.", "doctor jones said hello"),
        ("Um, uh, it's fine...", "it is fine"),
        (
            "I'm gonna pay $3.50 on May 1st.",
            "i am going to pay $3.50 on may 1st",
        ),
        ("We can't go, can we?", "we can not go can we"),
        ("Organise the theatre centre", "organize the theater center"),
        ("", ""),
    ],
)
def test_normaliser_examples(text, expected):
    assert normalise(text) == expected


def test_normaliser_makes_formatting_differences_free():
    ref = "The birch canoe slid on the smooth planks."
    hyp = "the Birch canoe, slid on the smooth planks"
    assert normalise(ref) == normalise(hyp)
    assert wer([ref], [hyp]) == 0.0


def test_word_errors_hand_counted():
    e = word_errors("the cat sat on the mat", "the cat sit on mat")
    assert e == WordErrors(substitutions=1, deletions=1, insertions=0, n_ref=6)
    assert e.rate == pytest.approx(2 / 6)
    e = word_errors("a b c", "x a b c d")
    assert (e.substitutions, e.deletions, e.insertions) == (0, 0, 2)
    # nothing to say but something recognised: all insertions
    e = word_errors("", "hello there")
    assert (e.insertions, e.n_ref, e.rate) == (2, 0, math.inf)
    # nothing recognised: all deletions
    assert word_errors("red green blue", "").deletions == 3


def test_wer_is_pooled_not_averaged():
    refs = ["red green blue black", "white pink"]
    hyps = ["red green blue black", "white"]
    # 1 error over 6 words (the mean of utterance WERs would be 25 %)
    assert wer(refs, hyps) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


def test_wer_normalises_numbers_on_both_sides():
    assert wer(["I have twenty dogs"], ["i have 20 dogs"]) == 0.0
    assert wer(["I have twenty dogs"], ["i have 21 dogs"]) == 0.25
    # Whisper's normaliser reads a run of spelled digits as one number
    assert normalise("one two three four") == "1234"
    assert wer(["one two three four"], ["1234"]) == 0.0


def test_cpwer_picks_the_best_permutation():
    refs = ["the quick brown fox", "jumps over the lazy dog"]
    hyps = ["jumps over a lazy dog", "the quick brown fox"]
    e, assignment = cp_word_errors(refs, hyps)
    assert assignment == (1, 0)
    assert (e.errors, e.n_ref) == (1, 9)
    # the identity assignment would have been far worse
    ident = word_errors(refs[0], hyps[0]) + word_errors(refs[1], hyps[1])
    assert ident.errors > 5
    assert cpwer([refs], [hyps]) == pytest.approx(1 / 9)


def test_cpwer_unmatched_streams_and_speakers():
    # one stream for two speakers: the other speaker is all deletions
    e, a = cp_word_errors(["a b c", "d e"], ["d e"])
    assert (e.deletions, e.errors, a) == (3, 3, (None, 0))
    # an extra stream is all insertions
    e, a = cp_word_errors(["a b"], ["x y z", "a b"])
    assert (e.insertions, e.errors, a) == (3, 3, (1,))


def test_cpwer_matches_meeteval():
    meeteval = pytest.importorskip("meeteval")
    rng = np.random.default_rng(0)
    vocab = "a b c d e f g h".split()
    for _ in range(20):
        refs = [
            " ".join(rng.choice(vocab, rng.integers(1, 8))) for _ in range(2)
        ]
        hyps = [
            " ".join(rng.choice(vocab, rng.integers(0, 8))) for _ in range(2)
        ]
        ours, _ = cp_word_errors(refs, hyps, normalised=True)
        theirs = meeteval.wer.cp_word_error_rate(refs, hyps)
        assert ours.errors == theirs.errors
        assert ours.n_ref == theirs.length


def _tone(freq, n=SR, amp=1.0):
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)


def test_si_sdr_known_values():
    s = _tone(200)
    # a scaled copy: only the eps floor limits it
    assert si_sdr(s, 0.25 * s) > 100
    # orthogonal interference at amplitude 0.1: exactly 20 dB
    assert si_sdr(s, s + _tone(310, amp=0.1)) == pytest.approx(20.0, abs=1e-6)
    # scale invariance
    est = s + _tone(310, amp=0.3)
    assert si_sdr(s, 7 * est) == pytest.approx(si_sdr(s, est), abs=1e-9)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(10 * SR)
    long = _tone(200, 10 * SR) * np.sqrt(2)  # unit power
    # equal-power independent noise: about 0 dB
    assert si_sdr(long, long + noise) == pytest.approx(0.0, abs=0.1)
    # noise alone (no target at all): very low
    assert si_sdr(long, noise) < -25


def _speech_like(seconds=3.0):
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(np.pi * t)) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.1 * voiced * envelope).astype(np.float32)


def test_stoi_and_pesq_of_identical_and_noisy_signals():
    x = _speech_like()
    noise = np.random.default_rng(2).standard_normal(len(x)) * x.std()
    assert stoi(x, x) == pytest.approx(1.0, abs=1e-6)
    assert pesq_wb(x, x) > 4.5
    assert stoi(x, x + noise) < 0.9
    assert pesq_wb(x, x + noise) < 1.5
    with pytest.raises(ValueError):
        pesq_wb(x, x, sample_rate=8000)


def test_best_source_assignment():
    a, b, c = _tone(300, 4000), _tone(710, 4000), _tone(1130, 4000)
    for perm in itertools.permutations(range(3)):
        ests = [[a, b, c][i] + 0.05 * _tone(50, 4000) for i in perm]
        got = best_source_assignment([a, b, c], ests)
        assert [perm[j] for j in got] == [0, 1, 2]
