"""Two-stream data for D4AM: seeded corruption, pairing, batching."""

import numpy as np
import pytest
import soundfile as sf
import torch

from robust_brain.data.streams import (
    NoiseCorruptor,
    PairedStreams,
    SpeechStream,
    TokenEncoder,
    TwoStreamBatch,
    item_rng,
    read_rows,
)

SR = 16000


class Chars:
    """A character 'tokenizer' (ids 3.. for A..Z and space)."""

    def encode_as_ids(self, text):
        return [3 + (26 if c == " " else ord(c) - 65) for c in text]


def _tone(n, f, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return 0.1 * np.sin(2 * np.pi * f * t) + 0.001 * rng.normal(size=n)


@pytest.fixture
def corpus(tmp_path):
    """Clean utterances (transcribed + speech-only), noise, pairs."""
    rows = {"asr": [], "se": [], "noise": [], "pairs": []}
    for i in range(5):
        n = 8000 + 1600 * i
        path = tmp_path / f"asr{i}.wav"
        sf.write(path, _tone(n, 200 + 50 * i, i), SR)
        rows["asr"].append(
            {
                "ID": f"a{i}",
                "wav": str(path),
                "duration": n / SR,
                "wrd": "HELLO WORLD"[: 3 + i],
            }
        )
    for i in range(3):
        n = 40000
        path = tmp_path / f"se{i}.wav"
        sf.write(path, _tone(n, 300 + 70 * i, 10 + i), SR)
        rows["se"].append({"ID": f"s{i}", "wav": str(path), "duration": n / SR})
    for i in range(2):
        path = tmp_path / f"noise{i}.wav"
        sf.write(path, np.random.default_rng(20 + i).normal(size=12000), SR)
        rows["noise"].append(
            {"ID": f"n{i}", "wav": str(path), "duration": 0.75}
        )
    for i in range(2):
        noisy, clean = tmp_path / f"pn{i}.wav", tmp_path / f"pc{i}.wav"
        sf.write(clean, _tone(6000, 250, 30 + i), SR)
        sf.write(noisy, _tone(6000, 250, 30 + i) + 0.01, SR)
        rows["pairs"].append(
            {
                "ID": f"p{i}",
                "noisy_wav": str(noisy),
                "clean_wav": str(clean),
                "duration": 6000 / SR,
                "wrd": "HI",
            }
        )
    return rows


def _streams(corpus, seed=0, snr=(-4.0, 6.0)):
    corrupt = NoiseCorruptor(corpus["noise"], snr_range=snr)
    asr = SpeechStream(
        corpus["asr"],
        corrupt,
        text_pipeline=TokenEncoder(Chars()),
        seed=seed,
        name="asr",
    )
    se = SpeechStream(
        corpus["se"], corrupt, segment=(4000, 12000), seed=seed, name="se"
    )
    return asr, se


def _snr(noisy, clean):
    noise = noisy - clean
    return float(10 * torch.log10(clean.pow(2).sum() / noise.pow(2).sum()))


def test_corruption_level_snr_and_determinism(corpus):
    asr, _ = _streams(corpus, snr=(-4.0, 6.0))
    snrs = []
    for i in range(len(asr)):
        item = asr[i]
        assert item["noisy"].shape == item["clean"].shape
        level = 20 * torch.log10(item["clean"].pow(2).mean().sqrt())
        assert abs(float(level) + 25.0) < 1e-3
        snrs.append(_snr(item["noisy"], item["clean"]))
        again = asr[i]
        assert torch.equal(again["noisy"], item["noisy"])
    assert all(-4.0 - 1e-3 <= s <= 6.0 + 1e-3 for s in snrs)
    assert len({round(s, 3) for s in snrs}) == len(snrs)  # drawn per item


def test_draws_ignore_global_random_state(corpus):
    asr, _ = _streams(corpus)
    torch.manual_seed(0)
    np.random.seed(0)
    a = asr[2]["noisy"]
    torch.manual_seed(123)
    np.random.seed(123)
    torch.rand(10)
    assert torch.equal(asr[2]["noisy"], a)


def test_epoch_and_seed_change_the_draws(corpus):
    asr, _ = _streams(corpus, seed=0)
    a = asr[1]["noisy"]
    asr.set_epoch(1)
    assert not torch.equal(asr[1]["noisy"], a)
    asr.set_epoch(0)
    assert torch.equal(asr[1]["noisy"], a)
    other, _ = _streams(corpus, seed=1)
    assert not torch.equal(other[1]["noisy"], a)


def test_speech_only_crops_within_bounds(corpus):
    _, se = _streams(corpus)
    lengths = set()
    for epoch in range(4):
        se.set_epoch(epoch)
        for i in range(len(se)):
            n = se[i]["noisy"].numel()
            assert 4000 <= n <= 12000
            lengths.add(n)
    assert len(lengths) > 3


def test_pairing_deterministic_per_seed_and_epoch(corpus):
    asr, se = _streams(corpus)
    pairs = PairedStreams(asr, se, seed=5)
    first = [pairs.pair_index(i) for i in range(len(pairs))]
    assert first == [pairs.pair_index(i) for i in range(len(pairs))]
    # every speech-only item once per block of len(se) items
    assert sorted(first[:3]) == [0, 1, 2]
    other = PairedStreams(asr, se, seed=5)
    assert first == [other.pair_index(i) for i in range(len(other))]
    epochs = set()
    for epoch in range(6):
        pairs.set_epoch(epoch)
        epochs.add(tuple(pairs.pair_index(i) for i in range(len(pairs))))
    assert len(epochs) > 1
    assert asr.epoch == se.epoch == 5  # set_epoch reaches both streams


def test_twice_paired_speech_item_gets_two_corruptions(corpus):
    asr, se = _streams(corpus)
    pairs = PairedStreams(asr, se, seed=0)
    n = len(se)
    same = [
        (i, j)
        for i in range(len(pairs))
        for j in range(i + 1, len(pairs))
        if pairs.pair_index(i) == pairs.pair_index(j)
    ]
    assert same, f"with {len(pairs)} > {n} items some are reused"
    i, j = same[0]
    assert not torch.equal(pairs[i]["se"]["noisy"], pairs[j]["se"]["noisy"])


def test_collate_shapes_lengths_and_tokens(corpus):
    asr, se = _streams(corpus)
    pairs = PairedStreams(asr, se, seed=0)
    batch = PairedStreams.collate([pairs[i] for i in range(4)])
    assert isinstance(batch, TwoStreamBatch) and len(batch) == 4
    wavs, lens = batch.asr.noisy
    clean, clean_lens = batch.asr.clean
    assert wavs.shape == clean.shape and torch.equal(lens, clean_lens)
    assert float(lens.max()) == 1.0
    true = torch.tensor(
        [float(pairs[i]["asr"]["noisy"].numel()) for i in range(4)]
    )
    assert torch.allclose(lens * wavs.shape[1], true)
    tokens, token_lens = batch.asr.tokens
    assert tokens.dtype == torch.long and tokens.shape[0] == 4
    assert torch.allclose(
        token_lens * tokens.shape[1],
        torch.tensor([float(len("HELLO WORLD"[: 3 + i])) for i in range(4)]),
    )
    se_wavs, se_lens = batch.se.noisy
    assert se_wavs.shape[0] == 4 and se_wavs.shape[1] <= 12000
    moved = batch.to("cpu")
    assert moved.asr is batch.asr


def test_without_speech_only_stream_nothing_is_read(corpus):
    asr, _ = _streams(corpus)

    class Exploding(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def set_epoch(self, epoch):
            raise AssertionError("speech-only stream touched")

        def load(self, i, key):
            raise AssertionError("speech-only stream read")

    pairs = PairedStreams(asr, None, seed=0)
    pairs.set_epoch(2)
    batch = PairedStreams.collate([pairs[0], pairs[1]])
    assert batch.se is None
    with pytest.raises(AssertionError):
        PairedStreams(asr, Exploding(), seed=0)[0]


def test_workers_and_ranks_see_identical_items(corpus):
    asr, se = _streams(corpus)
    pairs = PairedStreams(asr, se, seed=0)
    pairs.set_epoch(3)
    ref = [pairs[i] for i in range(len(pairs))]
    loader = torch.utils.data.DataLoader(
        pairs, batch_size=1, num_workers=2, collate_fn=PairedStreams.collate
    )
    # workers run torch with one thread, this process with several: the
    # same draws give the same signal up to float rounding
    close = {"rtol": 1e-4, "atol": 1e-5}
    for i, batch in enumerate(loader):
        torch.testing.assert_close(
            batch.asr.noisy.data[0], ref[i]["asr"]["noisy"], **close
        )
        torch.testing.assert_close(
            batch.se.noisy.data[0], ref[i]["se"]["noisy"], **close
        )
    # two DDP ranks: each sees its own indices, with the same draws
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(
            pairs, num_replicas=2, rank=rank, shuffle=True, seed=0
        )
        sampler.set_epoch(3)
        for i in sampler:
            item = pairs[i]
            torch.testing.assert_close(
                item["se"]["noisy"], ref[i]["se"]["noisy"], **close
            )


def test_premixed_pairs_are_returned_as_is(corpus):
    stream = SpeechStream(corpus["pairs"], text_pipeline=TokenEncoder(Chars()))
    item = stream[1]
    noisy, _ = sf.read(corpus["pairs"][1]["noisy_wav"], dtype="float32")
    assert torch.allclose(item["noisy"], torch.from_numpy(noisy), atol=1e-4)
    assert item["tokens"].tolist() == [10, 11]
    with pytest.raises(ValueError, match="need a corruptor"):
        SpeechStream(corpus["asr"])


def test_read_rows_replaces_data_root(tmp_path):
    (tmp_path / "m.csv").write_text(
        "ID,duration,wav\nb,1.0,$data_root/x.wav\na,2.0,$data_root/y.wav\n"
    )
    rows = read_rows(tmp_path / "m.csv", data_root="/data")
    assert [r["ID"] for r in rows] == ["b", "a"]
    assert rows[1]["wav"] == "/data/y.wav"


def test_item_rng_is_stable():
    assert item_rng(1, "x", 2).integers(1 << 30) == item_rng(
        1, "x", 2
    ).integers(1 << 30)


def test_reverberation_keeps_dry_target(corpus, tmp_path):
    rir = np.zeros(800)
    rir[0], rir[400] = 1.0, 0.5
    sf.write(tmp_path / "rir.wav", rir, SR)
    corrupt = NoiseCorruptor(
        corpus["noise"],
        snr_range=(30.0, 30.0),
        rir_rows=[{"wav": str(tmp_path / "rir.wav")}],
        rir_prob=1.0,
    )
    clean = torch.from_numpy(_tone(8000, 300, 0)).float()
    noisy, target, info = corrupt(clean, np.random.default_rng(0))
    assert info["reverb"]
    level = 20 * torch.log10(target.pow(2).mean().sqrt())
    assert abs(float(level) + 25.0) < 1e-3
    assert _snr(noisy, target) < 15.0  # the echo is not part of the target
