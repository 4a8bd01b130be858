"""Online distortions (robust_brain.distortions): values, modes, seeding."""

import collections

import numpy as np
import pytest
import soundfile as sf
import torch

from robust_brain.data.streams import item_rng
from robust_brain.distortions import (
    DistortedSpeech,
    Distorter,
    add_at_snr,
    exponential_rir,
    pitch_shift,
)

SR = 16000


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """Tiny noise / speech / RIR manifests."""
    d = tmp_path_factory.mktemp("bank")
    rng = np.random.default_rng(0)
    lines = {"noise": [], "speech": [], "rir": []}
    for name in ["white_000", "pink_000", "babble_000"]:
        sf.write(d / f"{name}.wav", rng.normal(size=SR) * 0.1, SR)
        lines["noise"].append(f"train_{name},1.0,$data_root/{name}.wav")
    for i in range(4):
        t = np.arange(SR) / SR
        x = np.sin(2 * np.pi * (150 + 40 * i) * t) * 0.1
        sf.write(d / f"s{i}.wav", x, SR)
        lines["speech"].append(f"s{i},1.0,$data_root/s{i}.wav,SPEECH {i}")
    h = np.zeros(2000)
    h[100] = 1.0
    h[101:] = rng.normal(size=1899) * np.exp(-np.arange(1899) / 300) * 0.3
    sf.write(d / "rir0.wav", h, SR)
    lines["rir"].append("rir0,0.125,$data_root/rir0.wav")
    (d / "noise.csv").write_text(
        "ID,duration,wav\n" + "\n".join(lines["noise"]) + "\n"
    )
    (d / "speech.csv").write_text(
        "ID,duration,wav,wrd\n" + "\n".join(lines["speech"]) + "\n"
    )
    (d / "rir.csv").write_text("ID,duration,wav\n" + lines["rir"][0] + "\n")
    return d


def speech(n=SR):
    t = torch.arange(n) / SR
    return 0.05 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(t * 7))


def all_ops(bank, **kw):
    return Distorter(
        "single",
        single=[
            "noise",
            "gaussian",
            "babble",
            "reverb",
            "simreverb",
            "bandreject",
            "pitch",
        ],
        noise_csv=bank / "noise.csv",
        speech_csv=bank / "speech.csv",
        rir_csv=bank / "rir.csv",
        **kw,
    )


OPS = [
    "noise",
    "gaussian",
    "babble",
    "reverb",
    "simreverb",
    "bandreject",
    "pitch",
]


@pytest.mark.parametrize("op", OPS)
def test_each_operation_keeps_length_changes_signal_and_is_seeded(bank, op):
    d = all_ops(bank)
    x = speech()
    a = d.apply_op(x, op, np.random.default_rng(5))
    b = d.apply_op(x, op, np.random.default_rng(5))
    c = d.apply_op(x, op, np.random.default_rng(6))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    if op != "reverb":  # (one RIR file in the bank)
        assert not torch.equal(a, c)  # another seed: another draw


@pytest.mark.parametrize("op", ["noise", "gaussian", "babble"])
def test_additive_snr_is_in_range(bank, op):
    d = all_ops(bank, snr_range=(7.0, 7.0))
    x = speech()
    y = d.apply_op(x, op, np.random.default_rng(1))
    snr = 10 * torch.log10(x.pow(2).sum() / (y - x).pow(2).sum())
    assert abs(float(snr) - 7.0) < 1e-3


def test_add_at_snr_and_zero_noise():
    x = speech()
    assert torch.equal(add_at_snr(x, torch.zeros_like(x), 0.0), x)
    y = add_at_snr(x, torch.randn_like(x), -3.0)
    snr = 10 * torch.log10(x.pow(2).sum() / (y - x).pow(2).sum())
    assert abs(float(snr) + 3.0) < 1e-3


def test_reverb_keeps_alignment_and_level(bank):
    d = all_ops(bank)
    x = torch.from_numpy(np.random.default_rng(9).normal(size=SR)).float()
    y = d.apply_op(x, "reverb", np.random.default_rng(0))
    # SpeechBrain's reverberate: direct path in place, average level kept
    lag = int(
        torch.argmax(
            torch.fft.irfft(torch.fft.rfft(y) * torch.fft.rfft(x).conj())
        )
    )
    assert lag == 0
    ratio = float(y.abs().mean() / x.abs().mean())
    assert 0.9 < ratio < 1.1


def test_exponential_rir_decays_by_60_db():
    h = exponential_rir(0.5, np.random.default_rng(0))
    assert h.numel() == 8000 and float(h[0]) == 1.0
    early = h[1:800].pow(2).mean()
    late = h[-800:].pow(2).mean()
    assert 40 < float(10 * torch.log10(early / late)) < 70


def test_pitch_shift_moves_the_peak_and_keeps_length():
    t = torch.arange(SR) / SR
    x = torch.sin(2 * torch.pi * 500 * t)
    down = pitch_shift(x, -1200)
    assert down.shape == x.shape
    assert abs(int(torch.fft.rfft(down).abs().argmax()) - 250) <= 3
    assert torch.equal(pitch_shift(x, 0), x)


def test_bandreject_removes_energy_at_its_band_and_leaves_global_rng(bank):
    d = all_ops(bank, band_range=(0.25, 0.25), band_width=0.05)
    x = torch.randn(SR) * 0.05
    state = torch.get_rng_state()
    y = d.apply_op(x, "bandreject", np.random.default_rng(0))
    assert torch.equal(torch.get_rng_state(), state)
    spec_x, spec_y = torch.fft.rfft(x).abs(), torch.fft.rfft(y).abs()
    band = slice(1980, 2020)  # 0.25 x Nyquist = 2 kHz (1 Hz bins)
    assert float(spec_y[band].mean() / spec_x[band].mean()) < 0.4
    far = slice(5000, 6000)
    assert float(spec_y[far].mean() / spec_x[far].mean()) > 0.8


def test_double_mode_draws_every_pair_uniformly(bank):
    d = Distorter(
        "double",
        additive=["noise", "gaussian", "babble", "none"],
        nonadditive=["reverb", "pitch", "bandreject", "none"],
        noise_csv=bank / "noise.csv",
        speech_csv=bank / "speech.csv",
        rir_csv=bank / "rir.csv",
    )
    counts = collections.Counter(
        "+".join(d.draw(item_rng(0, "d", i))) or "clean" for i in range(3200)
    )
    assert len(counts) == 16 == len(d.domain_names)
    assert set(counts) == set(d.domain_names)
    for name, n in counts.items():
        assert 140 < n < 260, (name, n)  # expected 200
    # additive always comes first
    assert all(
        not k.startswith(("reverb", "pitch", "bandreject+")) or "+" not in k
        for k in counts
    )


def test_single_mode_robustdistiller_probabilities(bank):
    d = Distorter(
        "single",
        single=["noise", "reverb", "noise+reverb"],
        single_probs=[0.25, 0.25, 0.25],
        noise_csv=bank / "noise.csv",
        rir_csv=bank / "rir.csv",
    )
    counts = collections.Counter(
        "+".join(d.draw(item_rng(1, "s", i))) or "clean" for i in range(2000)
    )
    assert set(counts) == {"noise", "reverb", "noise+reverb", "clean"}
    assert all(420 < n < 580 for n in counts.values()), counts
    assert d.domain_names == ["clean", "noise", "reverb", "noise+reverb"]
    assert d.domain_index(("noise", "reverb")) == 3


def test_none_mode_is_identity():
    d = Distorter("none")
    x = speech()
    y, ops = d(x, np.random.default_rng(0))
    assert ops == () and torch.equal(y, x)


def test_noise_id_filter_keeps_babble_noise_out(bank):
    d = Distorter(
        "single",
        single=["noise"],
        noise_csv=bank / "noise.csv",
        noise_id_filter=["white", "pink"],
    )
    assert [r["ID"] for r in d.check().rows("noise")] == [
        "train_white_000",
        "train_pink_000",
    ]


def test_bad_settings_name_the_culprit(bank, tmp_path):
    with pytest.raises(ValueError, match="unknown mode 'triple'"):
        Distorter("triple")
    with pytest.raises(
        ValueError, match="unknown nonadditive operation 'echo'"
    ):
        Distorter("double", additive=["gaussian"], nonadditive=["echo"])
    with pytest.raises(ValueError, match="unknown single operation 'hum'"):
        Distorter("single", single=["gaussian+hum"])
    with pytest.raises(ValueError, match="'noise' needs noise_csv"):
        Distorter("single", single=["noise"])
    with pytest.raises(ValueError, match="single_probs"):
        Distorter("single", single=["gaussian"], single_probs=[0.7, 0.6])
    missing = Distorter(
        "single", single=["noise"], noise_csv=tmp_path / "nope.csv"
    )
    with pytest.raises(FileNotFoundError, match="noise_csv .*nope.csv"):
        missing.check()
    empty = Distorter(
        "single",
        single=["noise"],
        noise_csv=bank / "noise.csv",
        noise_id_filter=["brown"],
    )
    with pytest.raises(ValueError, match="no usable row"):
        empty.check()


@pytest.fixture(scope="module")
def rows(bank):
    return [
        {"ID": f"s{i}", "wav": str(bank / f"s{i}.wav"), "wrd": f"SPEECH {i}"}
        for i in range(4)
    ]


def _items(loader):
    return [
        (
            b.id,
            b.student_ops,
            b.teacher_ops,
            b.student.data.clone(),
            b.teacher.data.clone(),
        )
        for b in loader
    ]


def _same_signal(a, b):
    """Same draws, same signal up to float rounding: DataLoader workers run
    torch with one thread, the main process with several, so reductions
    may differ in the last bits (a different draw differs by far more)."""
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_items_do_not_depend_on_workers_and_change_with_epoch(bank, rows):
    dist = all_ops(bank)
    data = DistortedSpeech(rows, dist, dist, seed=3, max_samples=12000)

    def load(workers):
        return _items(
            torch.utils.data.DataLoader(
                data,
                batch_size=2,
                num_workers=workers,
                collate_fn=data.collate,
            )
        )

    single, multi = load(0), load(2)
    assert len(single) == len(multi)
    for a, b in zip(single, multi, strict=True):
        assert a[:3] == b[:3]  # ids and the drawn operations
        assert _same_signal(a[3], b[3]) and _same_signal(a[4], b[4])
    before = data[1]["student"]
    data.set_epoch(1)
    assert not _same_signal(data[1]["student"], before)
    data.set_epoch(0)
    assert _same_signal(data[1]["student"], before)
    other_seed = DistortedSpeech(rows, dist, dist, seed=4, max_samples=12000)
    assert not _same_signal(other_seed[1]["student"], before)


def test_setup2_teacher_and_student_draw_independently(bank, rows):
    dist = Distorter(
        "double",
        additive=["gaussian", "noise", "none"],
        nonadditive=["simreverb", "pitch", "bandreject", "none"],
        noise_csv=bank / "noise.csv",
    )
    many = rows * 10
    data = DistortedSpeech(many, dist, dist, seed=0)
    items = [data[i] for i in range(len(many))]
    differ_ops = sum(i["student_ops"] != i["teacher_ops"] for i in items)
    differ_wav = sum(not torch.equal(i["student"], i["teacher"]) for i in items)
    assert differ_ops >= len(items) // 2  # 13/16 expected to differ
    # identical only when both drew clean
    both_clean = sum(
        i["student_ops"] == i["teacher_ops"] == "clean" for i in items
    )
    assert differ_wav == len(items) - both_clean
    # setup 1: the teacher hears the clean signal
    setup1 = DistortedSpeech(many, dist, None, seed=0)
    for i in range(8):
        assert torch.equal(setup1[i]["teacher"], setup1[i]["clean"])
        assert setup1[i]["teacher_ops"] == "clean"
    # distortion_same_as_student: one draw for both
    same = DistortedSpeech(many, dist, dist, teacher_same_as_student=True)
    assert all(
        torch.equal(same[i]["teacher"], same[i]["student"]) for i in range(8)
    )


def test_dataset_level_and_crop(bank, rows):
    data = DistortedSpeech(rows, None, None, max_samples=4000)
    item = data[0]
    assert item["clean"].numel() == 4000
    level = 20 * torch.log10(item["clean"].pow(2).mean().sqrt())
    assert abs(float(level) + 25.0) < 1e-3
    assert torch.equal(item["student"], item["clean"])
    with pytest.raises(ValueError, match="no 'wav' column"):
        DistortedSpeech([{"ID": "x", "path": "a"}])
