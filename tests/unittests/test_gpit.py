"""GPIT: permutation choice, L_AE properties, frozen-but-differentiable
encoders (tiny local Wav2Vec2 / Whisper through SpeechBrain's wrappers),
valid-frame masking, bad input."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import speechbrain as sb
import torch

from robust_brain import tiny_models as tm
from robust_brain.data.separation import DynamicMixingSet, SeparationSet
from robust_brain.evaluation.metrics import si_sdr
from robust_brain.evaluation.tables import gpit_table
from robust_brain.losses import (
    best_permutations,
    level_normalise,
    reorder_sources,
    sisdr_pit,
)
from robust_brain.methods.gpit import (
    EncoderEmbeddingLoss,
    GPITBrain,
    check_mode,
)
from robust_brain.models.separator import MaskingSeparator

SR = 16000


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """Any Hub query (what a non-local ``source`` triggers) fails."""
    from speechbrain.integrations.huggingface import huggingface as sb_hf

    def _refuse(*args, **kwargs):
        raise AssertionError(f"Hub queried for {args} {kwargs}")

    monkeypatch.setattr(sb_hf, "model_info", _refuse)


def wav2vec2(tmp_path, **kwargs):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

    kwargs.setdefault("freeze", False)
    return Wav2Vec2(
        source=str(tm.tiny_model_path("wav2vec2")),
        save_path=str(tmp_path / "w2v"),
        freeze_feature_extractor=False,
        output_norm=False,
        apply_spec_augment=False,
        **kwargs,
    )


def whisper(tmp_path):
    from speechbrain.integrations.huggingface.whisper import Whisper

    return Whisper(
        source=str(tm.tiny_model_path("whisper")),
        save_path=str(tmp_path / "whisper"),
        sampling_rate=SR,
        encoder_only=True,
        freeze=False,
        freeze_encoder=True,
    )


class Frames(torch.nn.Module):
    """A toy encoder: a linear map of 80-sample frames."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(80, 8)

    def forward(self, wavs, wav_lens=None):
        return self.proj(wavs.unfold(1, 80, 80))


def tiny_separator():
    """A tiny SepFormer (SpeechBrain's dual-path parts)."""
    from speechbrain.lobes.models.dual_path import (
        Decoder,
        Dual_Path_Model,
        Encoder,
        SBTransformerBlock,
    )

    torch.manual_seed(0)

    def block():
        return SBTransformerBlock(
            1, 8, 2, d_ffn=16, use_positional_encoding=True, norm_before=True
        )

    return MaskingSeparator(
        Encoder(kernel_size=16, out_channels=8),
        Dual_Path_Model(8, 8, block(), block(), num_layers=1, K=20),
        Decoder(
            in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False
        ),
    )


# ------------------------------------------------------------ permutations
@pytest.mark.parametrize("seed", range(5))
def test_sisdr_pit_matches_brute_force_numpy_si_sdr(seed):
    """SpeechBrain's PitWrapper permutation = the brute-force best mean
    SI-SDR of an independent (numpy) implementation."""
    g = torch.Generator().manual_seed(seed)
    refs = torch.randn(3, 1600, 2, generator=g)
    mix = torch.rand(3, 2, 2, generator=g)
    est = refs @ mix + 0.3 * torch.randn(3, 1600, 2, generator=g)
    loss, perms = sisdr_pit(est, refs)
    for b in range(3):
        best = max(
            itertools.permutations(range(2)),
            key=lambda p: np.mean(
                [
                    si_sdr(refs[b, :, c].numpy(), est[b, :, p[c]].numpy())
                    for c in range(2)
                ]
            ),
        )
        assert perms[b] == best
        score = np.mean(
            [
                si_sdr(refs[b, :, c].numpy(), est[b, :, best[c]].numpy())
                for c in range(2)
            ]
        )
        assert float(-loss[b]) == pytest.approx(score, abs=1e-3)


class SpyAE(torch.nn.Module):
    """An L_AE stand-in that records what it is given and whose pairwise
    matrix prefers the IDENTITY assignment, whatever the signals."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.encoder = torch.nn.Linear(1, 1)

    def freeze(self):
        self.encoder.requires_grad_(False).eval()
        return self

    def forward(self, est, refs, lengths=None):
        self.seen.append(est.detach().clone())
        return (est - refs).pow(2).mean((1, 2)) * 0 + est.mean((1, 2))

    def pairwise(self, est, refs, lengths=None):
        b, _, c = est.shape
        table = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
        return table.expand(b, c, c) + 0 * est.sum()


def _objectives(mode, est, refs):
    ae = SpyAE()
    brain = GPITBrain(
        modules={"separator": torch.nn.Identity()},
        hparams={"mode": mode, "ae_loss": ae},
    )
    lens = torch.ones(est.shape[0])
    mix = refs.sum(-1)
    losses = brain.compute_objectives(
        (est, refs, mix, lens), None, stage=sb.Stage.TRAIN
    )
    return ae, losses


def test_gpit_uses_the_sisdr_permutation_not_the_embedding_one():
    torch.manual_seed(1)
    refs = torch.randn(2, 1600, 2)
    # estimate 0 is source 1 and vice versa (SI-SDR says "swap"), while the
    # spy's embedding distances prefer the identity
    est = refs[..., [1, 0]] + 0.05 * torch.randn(2, 1600, 2)
    ae, losses = _objectives("GPIT", est, refs)
    assert set(losses) == {"ae"}
    (seen,) = ae.seen
    assert torch.equal(seen, est[..., [1, 0]])  # reordered by SI-SDR
    _, perms = sisdr_pit(est, refs)
    assert perms == [(1, 0), (1, 0)]


def test_pit_ae_uses_the_embedding_permutation():
    torch.manual_seed(1)
    refs = torch.randn(2, 1600, 2)
    est = refs[..., [1, 0]] + 0.05 * torch.randn(2, 1600, 2)
    ae, losses = _objectives("PIT-AE", est, refs)
    assert set(losses) == {"ae"}
    assert not ae.seen  # PIT-AE goes through pairwise()
    assert float(losses["ae"]) == 0.0  # the identity's cost in the table


def test_upit_mode_is_the_sisdr_loss():
    torch.manual_seed(2)
    refs = torch.randn(2, 1600, 2)
    est = refs[..., [1, 0]] + 0.1 * torch.randn(2, 1600, 2)
    brain = GPITBrain(
        modules={"separator": torch.nn.Identity()},
        hparams={"mode": "uPIT-SISDR"},
    )
    losses = brain.compute_objectives(
        (est, refs, refs.sum(-1), torch.ones(2)), None, sb.Stage.TRAIN
    )
    from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

    expected = get_si_snr_with_pitwrapper(refs, est).mean()
    assert set(losses) == {"sisdr"}
    assert float(losses["sisdr"]) == pytest.approx(float(expected), abs=1e-4)
    assert float(losses["sisdr"]) < -15  # -SI-SDR in dB: ~20 dB here


def test_best_permutations_and_reorder_numbers():
    d = torch.tensor([[[1.0, 4.0], [3.0, 2.0]], [[6.0, 1.0], [1.0, 6.0]]])
    loss, perms = best_permutations(d)
    assert perms == [(0, 1), (1, 0)]
    assert loss.tolist() == [1.5, 1.0]
    x = torch.arange(6.0).view(1, 3, 2)
    assert reorder_sources(x, [(1, 0)])[0, :, 0].tolist() == [1.0, 3.0, 5.0]


# -------------------------------------------------------------- L_AE values
def test_l_ae_is_zero_for_identical_inputs_wav2vec2(tmp_path):
    ae = EncoderEmbeddingLoss(wav2vec2(tmp_path)).freeze()
    assert ae.kind == "ssl"
    torch.manual_seed(0)
    refs = torch.randn(2, SR, 2) * 0.1
    lens = torch.tensor([1.0, 0.7])
    assert ae(refs, refs, lens).abs().max().item() == 0.0
    assert ae.pairwise(refs, refs, lens).diagonal(0, 1, 2).abs().max() == 0
    # a different estimate gives a positive loss
    other = refs + 0.1 * torch.randn_like(refs)
    assert (ae(other, refs, lens) > 1e-4).all()


def test_l_ae_is_zero_for_identical_inputs_whisper(tmp_path):
    ae = EncoderEmbeddingLoss(whisper(tmp_path)).freeze()
    assert ae.kind == "whisper" and ae.joint_batch
    torch.manual_seed(0)
    refs = torch.randn(1, SR // 2, 2) * 0.1
    assert ae(refs, refs).abs().max().item() == 0.0


def test_l_ae_is_invariant_to_the_level_of_the_estimate():
    ae = EncoderEmbeddingLoss(Frames(), kind="frames").freeze()
    torch.manual_seed(0)
    refs = torch.randn(2, 800, 2)
    est = refs + 0.3 * torch.randn(2, 800, 2)
    a = ae(est, refs)
    b = ae(7.5 * est, 0.2 * refs)
    assert torch.allclose(a, b, rtol=1e-4)
    assert (
        level_normalise(est[..., 0]).pow(2).mean(-1).sub(1).abs().max() < 1e-4
    )


@pytest.mark.parametrize("distance", ["mse", "l1", "cosine"])
def test_distances_zero_on_identity_positive_otherwise(distance):
    ae = EncoderEmbeddingLoss(Frames(), "frames", distance=distance).freeze()
    torch.manual_seed(3)
    refs = torch.randn(2, 800, 2)
    assert ae(refs, refs).abs().max() < 1e-6
    assert (ae(torch.randn(2, 800, 2), refs) > 1e-3).all()


# ------------------------------------------- frozen but differentiable
def test_gradient_reaches_separator_not_encoder(tmp_path):
    enc = wav2vec2(tmp_path)
    ae = EncoderEmbeddingLoss(enc).freeze()
    sep = tiny_separator()
    torch.manual_seed(0)
    refs = torch.randn(2, 8000, 2) * 0.1
    est = sep(refs.sum(-1))
    loss = ae(est, refs, torch.tensor([1.0, 0.8])).mean()
    loss.backward()
    grads = [p.grad for p in sep.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in enc.parameters())
    assert not any(p.requires_grad for p in enc.parameters())


def test_gradient_reaches_separator_through_whisper(tmp_path):
    ae = EncoderEmbeddingLoss(whisper(tmp_path)).freeze()
    sep = tiny_separator()
    torch.manual_seed(0)
    refs = torch.randn(1, 4000, 2) * 0.1
    ae(sep(refs.sum(-1)), refs).mean().backward()
    assert sum(float(p.grad.abs().sum()) for p in sep.parameters()) > 0
    assert all(p.grad is None for p in ae.encoder.parameters())


def test_freeze_true_wrapper_is_refused(tmp_path):
    with pytest.raises(ValueError, match="freeze=True"):
        EncoderEmbeddingLoss(wav2vec2(tmp_path, freeze=True))


def test_brain_keeps_the_encoder_frozen_in_eval_mode(tmp_path):
    enc = wav2vec2(tmp_path)
    ae = EncoderEmbeddingLoss(enc)
    enc.train()
    sep = tiny_separator()
    torch.manual_seed(0)
    refs = torch.randn(2, 4000, 2) * 0.1
    items = [
        {"id": str(i), "mix": refs[i].sum(-1), "sources": refs[i]}
        for i in range(2)
    ]
    loader = torch.utils.data.DataLoader(
        items, batch_size=2, collate_fn=SeparationSet.collate
    )
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    sep_before = [p.detach().clone() for p in sep.parameters()]
    brain = GPITBrain(
        modules={"separator": sep},
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-2),
        hparams={"mode": "GPIT", "ae_loss": ae},
        run_opts={"device": "cpu"},
    )
    brain.fit(range(2), loader, loader)
    assert not enc.training and not enc.model.training
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert any(
        not torch.equal(a, b)
        for a, b in zip(sep_before, sep.parameters(), strict=True)
    )
    assert brain.optimizer_step == 2
    assert brain.last_stats["ae"] > 0


def test_gpit_with_sisdr_term_and_a_surgery_rule():
    from robust_brain.surgery import make_rule

    sep = tiny_separator()
    torch.manual_seed(0)
    refs = torch.randn(2, 1600, 2)
    items = [
        {"id": str(i), "mix": refs[i].sum(-1), "sources": refs[i]}
        for i in range(2)
    ]
    loader = torch.utils.data.DataLoader(
        items, batch_size=2, collate_fn=SeparationSet.collate
    )
    brain = GPITBrain(
        modules={"separator": sep},
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
        hparams={
            "mode": "GPIT",
            "sisdr_weight": 0.5,
            "ae_loss": EncoderEmbeddingLoss(Frames(), "frames"),
            "surgery_rule": make_rule("pcgrad"),
        },
        run_opts={"device": "cpu"},
    )
    brain.fit(range(1), loader)
    stats = brain.surgery_stats
    assert {"loss_ae", "loss_sisdr", "cos", "gnorm_ae"} <= set(stats)
    assert math.isfinite(stats["cos"])


# --------------------------------------------------------- frame masking
def test_frame_counts_follow_each_encoder(tmp_path):
    w2v = EncoderEmbeddingLoss(wav2vec2(tmp_path))
    mask = w2v.frame_mask(torch.tensor([1.0, 0.5]), SR, 49)
    assert mask.sum(-1).tolist() == [49.0, 24.0]  # floor((N-400)/320)+1
    wsp = EncoderEmbeddingLoss(whisper(tmp_path))
    mask = wsp.frame_mask(torch.tensor([1.0, 0.5]), SR, 1500)
    assert mask.sum(-1).tolist() == [50.0, 25.0]  # ceil(N / 320) of 1500


def test_padding_of_the_estimate_is_ignored(tmp_path):
    """What the separator writes beyond an utterance's length (batch
    padding, and Whisper's 30 s padding) changes neither L_AE nor its
    gradient."""
    ae = EncoderEmbeddingLoss(whisper(tmp_path)).freeze()
    torch.manual_seed(0)
    refs = torch.randn(2, 8000, 2) * 0.1
    refs[1, 4000:] = 0
    lens = torch.tensor([1.0, 0.5])
    est = refs + 0.05 * torch.randn_like(refs)
    junk = est.clone()
    junk[1, 4000:] = torch.randn(4000, 2)
    junk.requires_grad_()
    a = ae(est, refs, lens)
    b = ae(junk, refs, lens)
    assert torch.allclose(a, b, atol=1e-6)
    b.sum().backward()
    assert junk.grad[1, 4000:].abs().max() == 0
    assert junk.grad[1, :4000].abs().max() > 0


def test_whisper_loss_compares_only_valid_frames(tmp_path):
    """With the mask, L_AE is a mean over the valid frames: a difference
    confined to the input changes it by the same amount whatever the
    (constant) padding frames are; without it, the 1475 padding frames of
    a 0.5 s input would dilute it ~60x."""
    ae = EncoderEmbeddingLoss(whisper(tmp_path)).freeze()
    torch.manual_seed(0)
    refs = torch.randn(1, SR // 2, 2) * 0.1
    est = refs + 0.1 * torch.randn_like(refs)
    feats, mask = ae.embed(est[..., 0], torch.ones(1))
    assert mask.sum().item() == 25
    full = (feats[0] - ae.embed(refs[..., 0], torch.ones(1))[0][0]) ** 2
    per_frame = full.mean(-1)[0]
    masked = per_frame[:25].mean()
    unmasked = per_frame.mean()
    assert masked > 5 * unmasked


# ------------------------------------------------------------- bad input
def test_unknown_mode_and_options_are_named():
    with pytest.raises(ValueError, match="unknown permutation mode 'PIT'"):
        check_mode("PIT")
    with pytest.raises(ValueError, match="'PIT'"):
        GPITBrain(
            modules={"separator": torch.nn.Identity()},
            hparams={"mode": "PIT"},
        )
    with pytest.raises(ValueError, match="needs ae_loss"):
        GPITBrain(
            modules={"separator": torch.nn.Identity()},
            hparams={"mode": "GPIT"},
        )
    with pytest.raises(ValueError, match="unknown L_AE distance 'kl'"):
        EncoderEmbeddingLoss(Frames(), distance="kl")
    with pytest.raises(ValueError, match="unknown L_AE normalisation"):
        EncoderEmbeddingLoss(Frames(), normalisation="loud")


def test_separation_set_names_missing_files(tmp_path):
    import soundfile as sf

    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        SeparationSet(tmp_path / "nothing.csv")
    sf.write(tmp_path / "mix.wav", np.zeros(1600), SR)
    sf.write(tmp_path / "s1.wav", np.zeros(1600), SR)
    (tmp_path / "m.csv").write_text(
        "ID,duration,mix_wav,s1_wav,s2_wav\n"
        "u1,0.1,$data_root/mix.wav,$data_root/s1.wav,$data_root/s2.wav\n"
    )
    data = SeparationSet(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="s2.wav"):
        data[0]
    (tmp_path / "n.csv").write_text("ID,duration,mix_wav,s1_wav\nu,1,a,b\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['s2_wav'\]"):
        SeparationSet(tmp_path / "n.csv")


def _sources_manifest(tmp_path, speakers):
    """One row per speaker pair, each source a distinct constant-free
    noise burst padded with zeros (as ``max`` mixtures are)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    lines = ["ID,duration,mix_wav,s1_wav,s2_wav,s1_spk,s2_spk"]
    for i, (a, b) in enumerate(speakers):
        for k in ("s1", "s2"):
            wav = np.zeros(SR, np.float32)
            wav[: SR // 2] = rng.normal(size=SR // 2) / 10
            sf.write(tmp_path / f"{k}_{i}.wav", wav, SR)
        sf.write(tmp_path / f"mix_{i}.wav", np.zeros(SR), SR)
        lines.append(
            f"u{i},1.0,$data_root/mix_{i}.wav,$data_root/s1_{i}.wav,"
            f"$data_root/s2_{i}.wav,{a},{b}"
        )
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_dynamic_mixing_draws_speakers_apart_and_sums(tmp_path):
    csv = _sources_manifest(tmp_path, [("A", "B"), ("A", "C"), ("B", "C")])
    data = DynamicMixingSet(
        csv, segment=SR // 4, items_per_epoch=12, ssr_db=5.0, seed=3
    )
    assert len(data) == 12
    levels = []
    for i in range(len(data)):
        item = data[i]
        picked = item["id"].split("+")
        spk = {
            f"u{r}.s{k}": s
            for r, pair in enumerate([("A", "B"), ("A", "C"), ("B", "C")])
            for k, s in zip((1, 2), pair, strict=True)
        }
        assert spk[picked[0]] != spk[picked[1]]
        src = item["sources"]
        assert src.shape == (SR // 4, 2)
        assert torch.allclose(src.sum(-1), item["mix"])
        # crops from the active part: no all-zero source
        rms = src.pow(2).mean(0).sqrt()
        assert bool((rms > 0).all())
        ratio_db = 20 * torch.log10(rms[0] / rms[1]).abs()
        assert float(ratio_db) <= 5.0 + 1e-3
        levels.append(float(ratio_db))
    assert max(levels) > 0.5  # the gains are drawn, not all equal
    again = DynamicMixingSet(
        csv, segment=SR // 4, items_per_epoch=12, ssr_db=5.0, seed=3
    )
    assert torch.equal(again[5]["mix"], data[5]["mix"])  # seeded
    data.set_epoch(1)
    assert not torch.equal(again[5]["mix"], data[5]["mix"])  # new epoch
    with pytest.raises(ValueError, match="fewer than 2 speakers"):
        DynamicMixingSet(_sources_manifest(tmp_path, [("A", "A")]), 100)
    with pytest.raises(ValueError, match="segment must be > 0"):
        DynamicMixingSet(csv, 0)


def test_dynamic_mixing_at_8khz_from_16khz_files(tmp_path):
    csv = _sources_manifest(tmp_path, [("A", "B"), ("C", "D")])
    with pytest.raises(ValueError, match="resample=True"):
        DynamicMixingSet(csv, 2000, sample_rate=8000)[0]
    data = DynamicMixingSet(csv, 2000, sample_rate=8000, resample=True)
    assert data[0]["mix"].shape == (2000,)


def _whamr_dm(root, tmp_path, **kw):
    return DynamicMixingSet(
        f"{root}/tr_max.csv",
        segment=4000,
        data_root=root,
        sample_rate=8000,
        resample=True,
        seed=2,
        **kw,
    )


def test_dynamic_mixing_of_reverberant_images_keeps_anechoic_targets(
    tmp_path,
):
    """With reverb=True the mixture sums the reverberant images, cropped
    and scaled exactly as their anechoic targets: a manifest whose images
    ARE the anechoic files gives the clean mixtures, item for item."""
    import csv as csv_module

    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    clean = _whamr_dm(root, tmp_path)
    reverb = _whamr_dm(root, tmp_path, reverb=True)
    item, wet = clean[1], reverb[1]
    assert item["id"] == wet["id"]
    assert torch.equal(item["sources"], wet["sources"])  # anechoic targets
    assert not torch.allclose(wet["mix"], wet["sources"].sum(-1), atol=1e-3)
    with open(f"{root}/tr_max.csv", newline="") as f:
        rows = list(csv_module.DictReader(f))
    for row in rows:
        row["s1_alt_wav"], row["s2_alt_wav"] = row["s1_wav"], row["s2_wav"]
        for key in row:
            row[key] = row[key].replace("$data_root", root)
    same = tmp_path / "same.csv"
    with open(same, "w", newline="") as f:
        writer = csv_module.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dry = DynamicMixingSet(
        same, 4000, sample_rate=8000, resample=True, seed=2, reverb=True
    )
    for i in range(len(dry)):
        assert torch.allclose(dry[i]["mix"], clean[i]["mix"], atol=1e-6)


@pytest.mark.parametrize("snr", [-6.0, 3.0])
def test_dynamic_mixing_adds_noise_at_the_drawn_snr(tmp_path, snr):
    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    data = _whamr_dm(root, tmp_path, snr_db=(snr, snr))
    for i in range(len(data)):
        item = data[i]
        noise = item["mix"] - item["sources"].sum(-1)
        louder = item["sources"].pow(2).mean(0).max()
        got = 10 * torch.log10(louder / noise.pow(2).mean())
        assert abs(float(got) - snr) < 0.01
        assert "noise:" in item["id"]
    bare = tmp_path / "bare.csv"
    text = Path(f"{root}/tr_max.csv").read_text().splitlines()
    cols = text[0].split(",")
    keep = [i for i, c in enumerate(cols) if c not in ("noise_wav",)]
    bare.write_text(
        "\n".join(
            ",".join(line.split(",")[i] for i in keep) for line in text
        ).replace("$data_root", root)
        + "\n"
    )
    with pytest.raises(ValueError, match="noise_wav"):
        DynamicMixingSet(bare, 4000, sample_rate=8000, snr_db=(0, 1))
    with pytest.raises(ValueError, match="low > high"):
        _whamr_dm(root, tmp_path, snr_db=(3, -6))


def test_l_ae_of_an_8khz_separator_encodes_at_16khz():
    """The encoder sees the signals at its own rate (twice the samples of
    an 8 kHz separator's output), and the gradient still reaches them."""
    seen = []

    class Frames(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(80, 8)

        def forward(self, wavs, wav_lens=None):
            seen.append(wavs.shape[-1])
            return self.proj(wavs.unfold(1, 80, 80))

    ae = EncoderEmbeddingLoss(
        Frames(), kind="frames", input_rate=8000, encoder_rate=16000
    ).freeze()
    refs = torch.randn(2, 800, 2)
    est = (refs + 0.3 * torch.randn(2, 800, 2)).requires_grad_()
    ae(est, refs).mean().backward()
    assert seen == [1600, 1600]  # estimates and references, each resampled
    assert bool(est.grad.abs().sum() > 0)
    assert float(ae(refs, refs).abs().max()) < 1e-6


def test_gpit_table_relative_cpwer():
    rows = []
    for system, errors in (("uPIT-SISDR", 40), ("GPIT", 30)):
        for rec in ("a", "b"):
            rows.append(
                {
                    "system": system,
                    "recogniser": rec,
                    "sub": errors,
                    "del": 0,
                    "ins": 0,
                    "n_ref": 100,
                }
            )
    table = gpit_table(rows, [], ["uPIT-SISDR", "GPIT"])
    last = table.splitlines()[-1]
    assert last.startswith("| GPIT | 30.0 | -25.0 | 30.0 | -25.0 |")


def test_curriculum_refuses_a_pretrain_stage_trained_without_it(tmp_path):
    """Adding dynamic mixing to a run whose pretrain stage is finished
    would only reload the old weights over the new stage's: refused."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "recipes" / "WHAMR" / "train_gpit.py"
    spec = importlib.util.spec_from_file_location("train_gpit", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    hparams = {"save_folder": str(tmp_path)}
    recipe.check_curriculum(hparams)  # a new run
    (tmp_path / "pretrain" / "save").mkdir(parents=True)
    with pytest.raises(ValueError, match="trained without dynamic mixing"):
        recipe.check_curriculum(hparams)
    (tmp_path / "pretrain_dm").mkdir()
    recipe.check_curriculum(hparams)  # the curriculum's own pretrain stage


def test_a_reloaded_stage_keeps_the_record_of_its_training(tmp_path):
    """stages.json: a stage that trained records its steps and seconds; a
    finished stage run again (nothing trained, no stats) leaves it."""
    import importlib.util
    import json
    from pathlib import Path
    from types import SimpleNamespace

    path = Path(__file__).parents[2] / "recipes" / "WHAMR" / "train_gpit.py"
    spec = importlib.util.spec_from_file_location("train_gpit", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    hparams = {"output_folder": str(tmp_path)}
    trained = SimpleNamespace(optimizer_step=250, last_stats={"si_sdri": 2.5})
    recipe.record_stage(hparams, "pretrain", trained, 120.0)
    reloaded = SimpleNamespace(optimizer_step=250, last_stats={})
    recipe.record_stage(hparams, "pretrain", reloaded, 0.4)
    info = json.loads((tmp_path / "stages.json").read_text())
    assert info["pretrain"]["seconds"] == 120.0
    assert info["pretrain"]["valid"] == {"si_sdri": 2.5}


# ------------------------------------------- WHAMR!'s four conditions
def test_condition_sisdri_on_whamr_components(tmp_path):
    """The mixture itself improves nothing in any condition; the oracle
    anechoic sources (when the mixture is their sum) are perfect; a
    manifest without a condition's column is refused by name."""
    from robust_brain.evaluation.separation import (
        WHAMR_CONDITIONS,
        condition_sisdri,
    )
    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    csv_path = f"{root}/tt_max.csv"
    same = condition_sisdri(
        lambda w, n: torch.stack([w, w], -1),
        csv_path,
        WHAMR_CONDITIONS,
        data_root=root,
    )
    assert set(same) == set(WHAMR_CONDITIONS)
    for name, r in same.items():
        assert abs(r["si_sdri"]) < 1e-3, name
        assert r["n"] == 2
    # the four mixtures get harder: anechoic is the easiest
    assert same["anechoic"]["si_sdr"] > same["reverb+noise"]["si_sdr"]

    class Oracle(torch.nn.Module):  # reads the sources of the mixture
        def __init__(self):
            super().__init__()
            self.queue = []

        def forward(self, w, n):
            return self.queue.pop(0)[:, : w.shape[1]]

    data = SeparationSet(
        csv_path, data_root=root, sample_rate=8000, resample=True
    )
    oracle = Oracle()
    for row in data.rows:
        s = torch.stack([data.load(row[c]) for c in ("s1_wav", "s2_wav")], -1)
        oracle.queue.append(s.unsqueeze(0))
    best = condition_sisdri(
        oracle, csv_path, {"anechoic": ("s1_wav", "s2_wav")}, data_root=root
    )
    assert best["anechoic"]["si_sdr"] > 60
    with pytest.raises(ValueError, match="no_such_wav"):
        condition_sisdri(
            oracle, csv_path, {"x": ("no_such_wav",)}, data_root=root
        )


def test_separator_conditions_tool_takes_numeric_overrides(tmp_path, capsys):
    """tools/separator_conditions.py builds the recipe's separator with
    --key=value overrides read as YAML (a size is a number), without the
    ASR encoder, and scores a checkpoint on the four mixtures."""
    import importlib.util

    from tests.utils.recipes import RESOURCES

    root_dir = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "separator_conditions", root_dir / "tools" / "separator_conditions.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data = RESOURCES["miniwhamr_tiny"]()
    sizes = {
        "sep_filters": 8,
        "tasnet_bottleneck": 4,
        "tasnet_hidden": 4,
        "tasnet_blocks": 1,
        "tasnet_repeats": 1,
    }
    overrides = [f"--{k}={v}" for k, v in sizes.items()] + [
        f"--data_folder={data}",
        f"--output_folder={tmp_path / 'out'}",
        "--ae_encoder_source=none",
        "--ae_encoder=null",
        "--ae_loss=null",
    ]
    from hyperpyyaml import load_hyperpyyaml

    with open(root_dir / "hparams" / "gpit_whisper_mini.yaml") as fin:
        yaml = "\n".join(o[2:].replace("=", ": ", 1) for o in overrides)
        separator = load_hyperpyyaml(fin, yaml)["separator"]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save(separator.state_dict(), ckpt / "separator.ckpt")
    tool.main(
        [
            str(root_dir / "hparams" / "gpit_whisper_mini.yaml"),
            str(ckpt),
            "--max_items=1",
            *overrides,
        ]
    )
    table = capsys.readouterr().out
    for condition in ("anechoic", "reverb+noise"):
        assert f"| {condition} |" in table
