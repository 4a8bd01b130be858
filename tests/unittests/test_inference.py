"""Trained front-ends as SpeechBrain pretrained folders."""

from pathlib import Path

import pytest
import soundfile as sf
import torch

from robust_brain.inference import (
    Enhancer,
    LevelNormalizedEnhancer,
    write_enhancer,
)
from robust_brain.models.demucs import Demucs


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    model = Demucs(hidden=4, depth=2, resample=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the initial weights
    model.dry = 0.25
    folder = write_enhancer(
        tmp_path / "front", model, input_level_dbfs=-20.0, description="t"
    )
    return model.eval(), folder


def test_folder_loads_and_enhances_as_the_evaluator_does(trained):
    """from_hparams rebuilds the same model (weights, dry) and
    enhance_batch is what the evaluation scores: level-normalised input."""
    model, folder = trained
    enhancer = Enhancer.from_hparams(source=str(folder))
    assert enhancer.mods.enhance_model.dry == 0.25
    wavs = 0.3 * torch.randn(2, 6000)
    lens = torch.tensor([1.0, 0.5])
    expected = LevelNormalizedEnhancer(model, -20.0)(wavs, lens)
    got = enhancer.enhance_batch(wavs, lens)
    assert got.shape == wavs.shape
    assert torch.allclose(got, expected, atol=1e-5)
    assert got[1, 3000:].abs().max() == 0  # padding stays silent
    assert not list(folder.glob(".*tmp"))


def test_enhance_file_writes_the_enhanced_wav(trained, tmp_path):
    _, folder = trained
    enhancer = Enhancer.from_hparams(source=str(folder))
    sf.write(tmp_path / "in.wav", 0.1 * torch.randn(8000).numpy(), 16000)
    out = enhancer.enhance_file(str(tmp_path / "in.wav"), tmp_path / "o.wav")
    audio, rate = sf.read(tmp_path / "o.wav")
    assert rate == 16000 and len(audio) == out.shape[-1] == 8000


def test_a_model_without_config_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="Linear has no `config`"):
        write_enhancer(tmp_path, torch.nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())


def test_separator_folder_rebuilds_the_same_separator(tmp_path, monkeypatch):
    """A separator built by the GPIT hparams (non-default sizes given as
    overrides) is written with the yaml that built it, loaded with
    from_hparams and separates as the original; separate_file writes one
    wav per source; the folder is in the hub layout."""
    from hyperpyyaml import load_hyperpyyaml

    from robust_brain.inference import (
        Separator,
        hparams_nodes,
        write_separator,
    )

    overrides = {
        "data_folder": str(tmp_path),
        "sep_filters": 8,
        "sep_nhead": 2,
        "sep_d_ffn": 16,
        "sep_chunk_size": 20,
        "sep_kernel_size": 16,
        "encoder_d_model": 16,
        "encoder_nhead": 2,
        "encoder_layers": 1,
        "encoder_d_ffn": 16,
    }
    hparams_file = Path(__file__).parents[2] / "hparams" / "gpit_mini.yaml"
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    torch.manual_seed(0)
    sep = hparams["separator"].eval()
    build = hparams_nodes(
        hparams_file,
        ["sep_encoder", "sep_masknet", "sep_decoder", "separator"],
        overrides,
    )
    folder = write_separator(tmp_path / "sep", sep, build, sample_rate=16000)
    loaded = Separator.from_hparams(source=str(folder))
    mix = torch.randn(2, 4000)
    with torch.no_grad():
        expected = sep(mix)
    assert torch.allclose(loaded.separate_batch(mix), expected, atol=1e-5)
    # loaded into another savedir, from another working directory
    monkeypatch.chdir(tmp_path)
    elsewhere = Separator.from_hparams(
        source=str(folder), savedir=str(tmp_path / "loaded")
    )
    assert torch.allclose(elsewhere.separate_batch(mix), expected, atol=1e-5)
    sf.write(tmp_path / "mix.wav", mix[0].numpy(), 16000)
    est = loaded.separate_file(tmp_path / "mix.wav", savedir=tmp_path / "o")
    assert est.shape == (4000, 2)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "mix_s1.wav",
        "mix_s2.wav",
    ]
    # the hub layout: the folder is a pretrained_separator of the recipe
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        "decoder.ckpt",
        "encoder.ckpt",
        "masknet.ckpt",
    ]
    overrides["pretrained_separator"] = str(folder)
    overrides["save_folder"] = str(tmp_path / "save")
    (tmp_path / "save").mkdir()
    with open(hparams_file) as fin:
        again = load_hyperpyyaml(fin, overrides)
    again["separator_pretrainer"].collect_files()
    again["separator_pretrainer"].load_collected()
    with torch.no_grad():
        out = again["separator"].eval()(mix)
    assert torch.allclose(out, expected, atol=1e-5)
