"""The proxy recogniser: hub layout, Pretrainer loading, frozen gradients,
free-running decoding."""

import shutil

import numpy as np
import pytest
import sentencepiece as spm
import speechbrain as sb
import torch
from speechbrain.utils.parameter_transfer import Pretrainer

from robust_brain.models.asr import ConformerASR, CTCRecogniser, freeze

TINY = {
    "vocab_size": 12,
    "d_model": 16,
    "nhead": 2,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "d_ffn": 32,
    "cnn_channels": (4, 4),
}


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return ConformerASR(**{**TINY, **kw})


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(2, 6000, generator=g)
    lens = torch.tensor([1.0, 0.7])
    tokens = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    return wavs, lens, tokens, torch.tensor([1.0, 0.5])


def test_default_is_the_conformer_small_layout():
    asr = ConformerASR()
    model = asr.asr_model
    assert isinstance(model, torch.nn.ModuleList) and len(model) == 4
    names = [type(m).__name__ for m in model]
    assert names == [
        "ConvolutionFrontEnd",
        "TransformerASR",
        "Linear",
        "Linear",
    ]
    tr = model[1]
    assert tr.causal is False and tr.attention_type == "RelPosMHAXL"
    assert len(tr.encoder.layers) == 12 and len(tr.decoder.layers) == 4
    assert type(tr.encoder).__name__ == "ConformerEncoder"
    assert model[2].w.out_features == model[3].w.out_features == 5000
    assert model[1].custom_src_module.layers[0].w.in_features == 640
    # 13.3 M parameters, as SpeechBrain's conformer_small
    n = sum(p.numel() for p in model.parameters())
    assert n == 13_327_296
    keys = model.state_dict().keys()
    assert "1.encoder.layers.0.mha_layer.pos_bias_u" in keys
    assert "3.w.weight" in keys and "2.w.weight" in keys


def test_pretrainer_loads_asr_normalizer_tokenizer(tmp_path):
    """The hub path: asr.ckpt + normalizer.ckpt + tokenizer.ckpt in a
    folder, loaded by SpeechBrain's Pretrainer into a fresh model."""
    src = tiny(seed=1)
    wavs, lens, tokens, tlens = batch()
    src.train()
    src.loss(wavs, lens, tokens, tlens, epoch=1)  # normaliser statistics
    src.eval()
    hub = tmp_path / "hub"
    hub.mkdir()
    torch.save(src.asr_model.state_dict(), hub / "asr.ckpt")
    src.normalizer._save(hub / "normalizer.ckpt")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(["A B C D E F G H"] * 20))
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(tmp_path / "tok"),
        vocab_size=12,
        model_type="char",
        bos_id=1,
        eos_id=2,
        unk_id=0,
    )
    shutil.copy(tmp_path / "tok.model", hub / "tokenizer.ckpt")

    dst = tiny(seed=2)
    tokenizer = spm.SentencePieceProcessor()
    pretrainer = Pretrainer(
        collect_in=tmp_path / "collect",
        loadables={
            "asr": dst.asr_model,
            "normalizer": dst.normalizer,
            "tokenizer": tokenizer,
        },
        paths={
            k: str(hub / f"{k}.ckpt")
            for k in ("asr", "normalizer", "tokenizer")
        },
    )
    sb.utils.distributed.run_on_main(pretrainer.collect_files)
    pretrainer.load_collected()
    dst.eval()
    with torch.no_grad():
        assert torch.allclose(dst(wavs, lens), src(wavs, lens), atol=1e-6)
    assert tokenizer.get_piece_size() == 12


def test_frozen_proxy_passes_gradient_to_its_input_only():
    asr = freeze(tiny())
    asr.normalizer.train()  # stats from one batch, then frozen again
    wavs, lens, tokens, tlens = batch()
    asr.loss(wavs, lens, tokens, tlens)
    freeze(asr)
    x = wavs.clone().requires_grad_(True)
    asr.loss(x, lens, tokens, tlens).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in asr.parameters())
    assert not asr.training


def test_eval_without_statistics_is_a_clear_error():
    asr = tiny().eval()
    wavs, lens, _, _ = batch()
    with pytest.raises(RuntimeError, match="no statistics"):
        asr(wavs, lens)


def test_greedy_ctc_is_free_running(monkeypatch):
    """Decoding never runs the attention decoder (no reference)."""
    asr = tiny(normalize=False).eval()

    def boom(*args, **kwargs):
        raise AssertionError("decoder used in greedy CTC")

    monkeypatch.setattr(asr.transformer.decoder, "forward", boom)
    wavs, lens, _, _ = batch()
    hyps = asr.greedy_ctc(wavs, lens)
    assert len(hyps) == 2
    assert all(0 not in h for h in hyps)  # blanks removed


def test_loss_matches_speechbrain_losses():
    asr = tiny(normalize=False, dropout=0.0).eval()
    wavs, lens, tokens, tlens = batch()
    from speechbrain.nnet.losses import ctc_loss, kldiv_loss

    from robust_brain.models.asr import add_bos_eos

    bos, eos, elens = add_bos_eos(tokens, tlens, 1, 2)
    src = asr.cnn(asr.features(wavs, lens))
    enc, dec = asr.transformer(src, bos, lens, pad_idx=0)
    ctc = ctc_loss(
        asr.ctc_lin(enc).log_softmax(-1),
        tokens,
        lens,
        tlens,
        0,
        reduction="batchmean",
    )
    att = kldiv_loss(
        asr.seq_lin(dec).log_softmax(-1),
        eos,
        length=elens,
        reduction="batchmean",
    )
    expected = 0.3 * ctc + 0.7 * att
    assert torch.allclose(asr.loss(wavs, lens, tokens, tlens), expected)


def test_ctc_recogniser_protocol():
    asr = tiny(normalize=False).eval()

    class Letters:
        def decode_ids(self, ids):
            return "".join(chr(64 + i) for i in ids)

    rec = CTCRecogniser(asr, Letters(), name="proxy")
    wavs = [np.zeros(3000, np.float32), 0.1 * np.ones(5000, np.float32)]
    out = rec.transcribe(wavs)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    other = CTCRecogniser(tiny(seed=9, normalize=False), Letters(), "proxy")
    assert rec.fingerprint != other.fingerprint
