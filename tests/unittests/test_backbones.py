"""Backbone swaps are yaml edits.

Each test makes the edit a user makes in a shipped hparams file (replace a
``!new:`` block by the alternative the file carries, commented out, or
change the class of a Hugging Face wrapper), loads the edited file with
HyperPyYAML and checks that the recipe's object works: a separator
separates and round-trips through its pretrained folder, an L_AE encoder
passes a gradient to the estimate, a GR front-end trains jointly, a
distillation teacher gives every hidden layer. Nothing in the library is
edited for a swap.
"""

from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from robust_brain import tiny_models as tm

HPARAMS = Path(__file__).parents[2] / "hparams"


def active_block(text: str, key: str) -> str:
    """The top-level node ``key:`` with its indented lines."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key}:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    return "".join(lines[start:end])


def commented_block(text: str, key: str, cls: str) -> str:
    """The commented-out alternative ``# key: !new:cls`` block, uncommented."""
    lines = text.splitlines(keepends=True)
    head = f"# {key}: !new:{cls}"
    start = next(i for i, ln in enumerate(lines) if ln.startswith(head))
    block = [lines[start][2:]]
    for ln in lines[start + 1 :]:
        if not ln.startswith("#     "):
            break
        block.append(ln[2:])
    return "".join(block)


def edited(tmp_path, name: str, key: str, cls: str | None = None) -> Path:
    """``hparams/<name>`` with the ``key`` block replaced by its commented
    alternative of class ``cls`` (None: unchanged)."""
    text = (HPARAMS / name).read_text()
    if cls is not None:
        new = commented_block(text, key, cls)
        text = text.replace(active_block(text, key), new)
    out = tmp_path / name
    out.write_text(text)
    return out


# ----------------------------------------------------- separator mask nets
SEP_OVERRIDES = {
    "sep_filters": 8,
    "sep_nhead": 2,
    "sep_d_ffn": 16,
    "sep_chunk_size": 20,
    "sep_kernel_size": 16,
    "tasnet_bottleneck": 8,
    "tasnet_hidden": 8,
    "tasnet_blocks": 1,
    "tasnet_repeats": 1,
    "conformer_layers": 1,
    "conformer_kernel": 3,
}
#: the offline ConformerASR encoder of gpit_mini.yaml, small
MINI_ENCODER = {
    "encoder_d_model": 16,
    "encoder_nhead": 2,
    "encoder_layers": 1,
    "encoder_d_ffn": 16,
}


@pytest.mark.parametrize(
    "cls, expected",
    [
        (None, "Dual_Path_Model"),
        ("speechbrain.lobes.models.conv_tasnet.MaskNet", "MaskNet"),
        (
            "robust_brain.models.separator.ConformerMaskNet",
            "ConformerMaskNet",
        ),
    ],
    ids=["sepformer", "convtasnet", "conformer"],
)
def test_separator_mask_net_is_a_yaml_edit(cls, expected, tmp_path):
    """SepFormer -> Conv-TasNet -> TD-Conformer by editing ``sep_masknet``:
    the separator trains (gradient reaches every part) and its written
    folder separates like it."""
    from robust_brain.inference import (
        Separator,
        hparams_nodes,
        write_separator,
    )

    path = edited(tmp_path, "gpit_mini.yaml", "sep_masknet", cls)
    overrides = {"data_folder": str(tmp_path), **SEP_OVERRIDES, **MINI_ENCODER}
    with open(path) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sep = hparams["separator"]
    assert type(sep.masknet).__name__ == expected
    torch.manual_seed(0)
    mix = torch.randn(2, 4000)
    est = sep(mix, torch.ones(2))
    assert est.shape == (2, 4000, 2)
    est.pow(2).mean().backward()
    for part in (sep.encoder, sep.masknet, sep.decoder):
        assert any(p.grad is not None for p in part.parameters())
    build = hparams_nodes(
        path,
        ["sep_encoder", "sep_masknet", "sep_decoder", "separator"],
        overrides,
    )
    folder = write_separator(tmp_path / "sep", sep.eval(), build)
    with torch.no_grad():
        expected_out = sep(mix)
    loaded = Separator.from_hparams(source=str(folder))
    assert type(loaded.mods.separator.masknet).__name__ == expected
    assert torch.allclose(loaded.separate_batch(mix), expected_out, atol=1e-5)


# ------------------------------------------------------ L_AE encoder family
SSL_CLASSES = {
    "wav2vec2": "speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2",
    "wavlm": "speechbrain.integrations.huggingface.wavlm.WavLM",
    "hubert": "speechbrain.integrations.huggingface.hubert.HuBERT",
}


def _ae_hparams(family, tmp_path):
    small = {
        "data_folder": str(tmp_path),
        "save_folder": str(tmp_path / "save"),
        **SEP_OVERRIDES,
    }
    if family in SSL_CLASSES:
        text = (HPARAMS / "gpit.yaml").read_text()
        text = text.replace(SSL_CLASSES["wav2vec2"], SSL_CLASSES[family])
        path = tmp_path / "gpit.yaml"
        path.write_text(text)
        small["ae_encoder_source"] = str(tm.tiny_model_path(family))
    elif family == "whisper":
        path = HPARAMS / "gpit_whisper.yaml"
        small["ae_encoder_source"] = str(tm.tiny_model_path("whisper"))
    else:  # the offline ConformerASR of gpit_mini.yaml (untrained here:
        # no feature statistics to normalise with)
        text = (HPARAMS / "gpit_mini.yaml").read_text()
        path = tmp_path / "gpit_mini.yaml"
        path.write_text(text.replace("normalize: True", "normalize: False"))
        small.update(MINI_ENCODER)
    with open(path) as fin:
        return load_hyperpyyaml(fin, small)


@pytest.mark.parametrize(
    "family, kind",
    [
        ("wav2vec2", "ssl"),
        ("wavlm", "ssl"),
        ("hubert", "ssl"),
        ("whisper", "whisper"),
        ("conformer", "conformer"),
    ],
)
def test_ae_encoder_family_is_a_yaml_edit(family, kind, tmp_path):
    """Wav2Vec2 -> WavLM -> HuBERT is the class of the ``ae_encoder``
    block (Whisper and the offline Conformer: their hparams files); L_AE
    counts that family's frames and its gradient reaches the estimate
    (none reaches the frozen encoder, nor the padding)."""
    hparams = _ae_hparams(family, tmp_path)
    ae = hparams["ae_loss"].freeze()
    assert ae.kind == kind
    torch.manual_seed(0)
    refs = 0.1 * torch.randn(2, 8000, 2)
    est = (refs + 0.05 * torch.randn(2, 8000, 2)).requires_grad_()
    lens = torch.tensor([1.0, 0.5])
    loss = ae(est, refs, lens)
    assert loss.shape == (2,) and bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert float(est.grad[:, :4000].abs().sum()) > 0
    assert float(est.grad[1, 4000:].abs().sum()) == 0
    assert all(p.grad is None for p in ae.encoder.parameters())


# ------------------------------------------------------- GR front-end swap
@pytest.mark.parametrize(
    "cls, expected",
    [(None, "MaskNet"), ("robust_brain.models.demucs.Demucs", "Demucs")],
    ids=["mask", "demucs"],
)
def test_gr_front_end_is_a_yaml_edit(cls, expected, tmp_path):
    """The BLSTM mask network -> DEMUCS by editing ``enhancer``: one joint
    GR step moves the front-end and the ASR."""
    from robust_brain.methods.gr import GRBrain
    from tests.unittests.test_gr import make_stream, tiny_asr

    path = edited(tmp_path, "gr_mini.yaml", "enhancer", cls)
    overrides = {
        "data_folder": str(tmp_path),
        "mask_layers": 1,
        "mask_units": 4,
        "demucs_hidden": 4,
        "demucs_depth": 2,
    }
    with open(path) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    enh = hparams["enhancer"]
    assert type(enh).__name__ == expected

    stream = make_stream(tmp_path)
    batch = stream.collate([stream[0], stream[1]])
    asr = tiny_asr()
    before = [p.detach().clone() for p in enh.parameters()]
    brain = GRBrain(
        modules={"enhancer": enh, "asr": asr},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "rule": "GR",
            "se_loss": hparams["se_loss"],
            "se_weight": 0.3,
        },
        run_opts={"device": "cpu"},
    )
    brain.fit(
        range(1),
        [batch],
        train_loader_kwargs={"batch_size": 1, "collate_fn": lambda b: b[0]},
    )
    assert brain.optimizer_step == 1
    assert any(
        not torch.equal(p.detach(), b)
        for p, b in zip(enh.parameters(), before, strict=True)
    )


# --------------------------------------------------- GR joint ASR swap
@pytest.mark.parametrize("back_end", ["conformer", "whisper"])
def test_gr_joint_asr_back_end_is_swappable(back_end, tmp_path):
    """GRBrain trains any recogniser with the proxies' interface (``loss``
    of a batch, ``transcribe``) jointly with the front-end: the offline
    Conformer CTC/attention model or Whisper (its teacher-forced CE). One
    GR step moves both, the validation decodes free-running."""
    from robust_brain.methods.gr import GRBrain
    from robust_brain.models.mask_net import MagnitudeLoss, MaskNet
    from tests.unittests.test_gr import make_stream, tiny_asr

    torch.manual_seed(0)
    if back_end == "whisper":
        from robust_brain.models.whisper import (
            WhisperASR,
            WhisperTextTokenizer,
        )
        from robust_brain.pretrained import whisper_checkpoint

        # the real tiny.en (the tiny local model has no tokenizer)
        source = str(whisper_checkpoint("tiny.en"))
        asr = WhisperASR(source, str(tmp_path / "w"), window_seconds=1)
        tokenizer = WhisperTextTokenizer(source)
    else:
        from tests.unittests.test_gr import Chars

        asr, tokenizer = tiny_asr(), Chars()
    stream = make_stream(tmp_path, tokenizer)
    batch = stream.collate([stream[0], stream[1]])
    enh = MaskNet(n_fft=64, hop_length=32, num_layers=1, hidden_size=4)
    before = {
        name: [p.detach().clone() for p in m.parameters()]
        for name, m in (("enhancer", enh), ("asr", asr))
    }
    brain = GRBrain(
        modules={"enhancer": enh, "asr": asr},
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={
            "rule": "GR",
            "se_loss": MagnitudeLoss(64, 32),
            "se_weight": 0.3,
            "tokenizer": tokenizer,
        },
        run_opts={"device": "cpu"},
    )
    loader = {"batch_size": 1, "collate_fn": lambda b: b[0]}
    brain.fit(
        range(1),
        [batch],
        [batch],
        train_loader_kwargs=loader,
        valid_loader_kwargs=loader,
    )
    assert brain.optimizer_step == 1
    for name, m in (("enhancer", enh), ("asr", asr)):
        assert any(
            not torch.equal(p.detach(), b)
            for p, b in zip(m.parameters(), before[name], strict=True)
        ), name
    assert "WER" in brain.last_stats
    # the joint system's own free-running WER in the evaluation
    from robust_brain.evaluation.joint import JointRecogniser

    rec = JointRecogniser(enh, asr, tokenizer, "GR")
    texts = rec.transcribe([0.05 * torch.randn(4000).numpy()] * 2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    if back_end == "whisper":
        with pytest.raises(ValueError, match="no CTC/attention beam"):
            JointRecogniser(enh, asr, tokenizer, "GR", decoding="beam")


# -------------------------------------------------- distillation teacher
@pytest.mark.parametrize("family", ["wavlm", "hubert", "wav2vec2"])
def test_distillation_teacher_family_is_a_yaml_edit(family, tmp_path):
    """WavLM -> HuBERT -> wav2vec 2.0 is the class of the ``teacher``
    block: the recipe's LayerTeacher gets every hidden layer of it."""
    from robust_brain.models.student import LayerTeacher

    text = (HPARAMS / "robustdistiller.yaml").read_text()
    text = text.replace(SSL_CLASSES["wavlm"], SSL_CLASSES[family])
    path = tmp_path / "robustdistiller.yaml"
    path.write_text(text)
    source = tm.tiny_model_path(family, num_hidden_layers=4)
    overrides = {
        "data_folder": str(tmp_path),
        "dns_folder": str(tmp_path),
        "save_folder": str(tmp_path / "save"),
        "teacher_hub": str(source),
    }
    with open(path) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    assert type(hparams["teacher"]).__name__.lower() == family
    teacher = LayerTeacher(hparams["teacher"])
    hiddens = teacher(torch.randn(2, 8000), torch.ones(2))
    assert teacher.num_layers == 4 and len(hiddens) == 5
    assert not any(p.requires_grad for p in teacher.parameters())
