"""Tiny stand-ins of real corpora and of a hub model, for recipe tests.

:func:`build_d4am_real_stand_ins` writes, in their real layouts:

* ``LibriSpeech/`` with ``train-clean-100``, ``train-clean-360`` and
  ``dev-clean`` (flac + ``*.trans.txt``);
* ``DNS-Challenge/datasets/noise/*.wav``;
* ``CHiME4/`` with the 1-channel track of ``dt05_{real,simu}`` (bus, caf),
  the booth recordings and the ``.dot_all`` transcripts;
* ``enhancer_init.pth``: weights of a tiny DEMUCS (:data:`ENHANCER_FLAGS`),
  as an ``init_checkpoint``;
* ``proxy_hub/``: ``asr.ckpt``, ``normalizer.ckpt`` and ``tokenizer.ckpt``
  of a TINY :class:`~robust_brain.models.asr.ConformerASR` (the files a
  SpeechBrain hub model holds), so that the real recipe's ``Pretrainer``
  path runs offline. Its sizes are :data:`PROXY_FLAGS`;
* ``w2v_proxy_hub/``: ``wav2vec2.ckpt``, ``asr.ckpt`` and ``tokenizer.ckpt``
  of a tiny wav2vec2 CTC model (``hparams/d4am_wav2vec2.yaml``'s layout;
  sizes :data:`W2V_PROXY_FLAGS`).

The audio is tones plus a little noise: enough for a debug run.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: size of the stand-in tokenizer: 26 letters + word boundary + unk/bos/eos
VOCAB = 30
PROXY_SIZES = {
    "d_model": 16,
    "nhead": 2,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "d_ffn": 32,
    "cnn_channels": (4, 4),
}
#: the recipe flags describing the stand-in hub model
PROXY_FLAGS = (
    f"--proxy_vocab_size={VOCAB} --proxy_d_model=16 --proxy_nhead=2 "
    "--proxy_encoder_layers=1 --proxy_decoder_layers=1 --proxy_d_ffn=32 "
    "--proxy_cnn_channels=[4,4]"
)
#: the recipe flags describing the stand-in INIT checkpoint
ENHANCER_FLAGS = "--enhancer_hidden=4 --enhancer_depth=2 --enhancer_resample=1"
WORDS = ["HELLO", "WORLD", "GOOD", "MORNING", "SPEECH", "NOISE", "QUIET"]
VERSION = 2  # 2: + the wav2vec2 CTC proxy hub


def _audio(path, seconds, seed, channels=1, sr=SR):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = 0.1 * np.sin(2 * np.pi * (120 + 40 * (seed % 7)) * t)
    x = x + 0.003 * rng.normal(size=n)
    sf.write(path, x, sr)
    return path


def _sentence(i):
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(2 + i % 3))


def build_librispeech(root):
    """train-clean-100 / train-clean-360 / dev-clean, 2 chapters each."""
    layout = {
        "train-clean-100": [("19", "198"), ("26", "495")],
        "train-clean-360": [("100", "121669"), ("101", "283")],
        "dev-clean": [("84", "121123")],
    }
    k = 0
    for split, chapters in layout.items():
        for spk, chap in chapters:
            folder = root / split / spk / chap
            lines = []
            for u in range(3):
                uttid = f"{spk}-{chap}-{u:04d}"
                _audio(folder / f"{uttid}.flac", 0.6 + 0.2 * u, k)
                lines.append(f"{uttid} {_sentence(k)}")
                k += 1
            (folder / f"{spk}-{chap}.trans.txt").write_text(
                "\n".join(lines) + "\n"
            )
    return root


def build_dns(root):
    for i, name in enumerate(("door_knock_1", "fan_2", "typing_3")):
        path = root / "datasets" / "noise" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.05 * np.random.default_rng(50 + i).normal(size=SR), SR)
    return root


def build_chime4(root):
    """dt05 real and simu, environments bus and caf."""
    ev = root / "data/audio/16kHz/isolated_1ch_track"
    bth = root / "data/audio/16kHz/isolated/dt05_bth"
    utts = {
        "dt05_real": ["F01_22GC010A_BUS.CH5", "M03_22HC010B_CAF.CH1"],
        "dt05_simu": ["F01_050C0101_BUS.CH3", "M03_051C0102_CAF.CH6"],
    }
    for split, files in utts.items():
        dataset, kind = split.split("_")
        lines = []
        for i, f in enumerate(files):
            name = f.split(".")[0]
            env = name.split("_")[2].lower()
            _audio(
                ev / f"{dataset}_{env}_{kind}/{f}.wav", 0.7 + 0.1 * i, 90 + i
            )
            lines.append(f"Good morning {WORDS[i]} ({name})")
            if kind == "simu":
                spk, wsj, _ = name.split("_")
                _audio(bth / f"{spk}_{wsj}_BTH.CH0.wav", 0.7 + 0.1 * i, 95 + i)
        path = root / f"data/transcriptions/{split}.dot_all"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return root


def build_proxy_hub(root):
    """asr.ckpt, normalizer.ckpt, tokenizer.ckpt of a tiny ConformerASR."""
    import sentencepiece as spm
    import torch

    from robust_brain.models.asr import ConformerASR

    root.mkdir(parents=True, exist_ok=True)
    text = root / "alphabet.txt"
    text.write_text("\n".join([" ".join(ALPHABET)] * 20 + WORDS) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(root / "tok"),
        vocab_size=VOCAB,
        model_type="char",
        bos_id=1,
        eos_id=2,
        unk_id=0,
        minloglevel=2,
    )
    tok = spm.SentencePieceProcessor()
    tok.load(str(root / "tok.model"))
    if tok.get_piece_size() != VOCAB:
        raise RuntimeError(f"stand-in tokenizer has {tok.get_piece_size()}")
    (root / "tok.model").replace(root / "tokenizer.ckpt")
    torch.manual_seed(0)
    model = ConformerASR(vocab_size=VOCAB, **PROXY_SIZES)
    model.train()
    wavs = 0.1 * torch.randn(2, 8000)
    model.features(wavs, torch.ones(2), epoch=1)  # normaliser statistics
    torch.save(model.asr_model.state_dict(), root / "asr.ckpt")
    model.normalizer._save(root / "normalizer.ckpt")
    return root


#: the recipe flags describing the stand-in wav2vec2 CTC hub model
W2V_PROXY_FLAGS = (
    f"--wav2vec2_dim=32 --proxy_enc_neurons=16 --proxy_vocab_size={VOCAB}"
)


def build_wav2vec2_proxy_hub(root, conformer_hub):
    """wav2vec2.ckpt, asr.ckpt, tokenizer.ckpt of a tiny wav2vec2 CTC model
    laid out like SpeechBrain's asr-wav2vec2-librispeech (the tokenizer is
    the Conformer stand-in's character model); its ``wav2vec2_hub`` is
    ``tiny_model_path("wav2vec2")``. Sizes: :data:`W2V_PROXY_FLAGS`."""
    import shutil

    import torch
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from speechbrain.nnet.containers import Sequential
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.normalization import BatchNorm1d

    from robust_brain.tiny_models import tiny_model_path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    source = tiny_model_path("wav2vec2")
    torch.manual_seed(0)
    w2v = Wav2Vec2(str(source), str(root / "w2v_cache"), output_norm=True)
    enc = Sequential(input_shape=[None, None, 32])
    for i in ("1", "2", "3"):
        enc.append(Linear, n_neurons=16, bias=True, layer_name=f"linear{i}")
        enc.append(BatchNorm1d, layer_name=f"bn{i}")
        act = "activation" if i == "1" else f"activation{i}"
        enc.append(torch.nn.LeakyReLU(), layer_name=act)
        if i != "3":
            drop = "drop" if i == "1" else f"drop{i}"
            enc.append(torch.nn.Dropout(0.15), layer_name=drop)
    head = torch.nn.Sequential(enc, Linear(input_size=16, n_neurons=VOCAB))
    torch.save(w2v.state_dict(), root / "wav2vec2.ckpt")
    torch.save(head.state_dict(), root / "asr.ckpt")
    shutil.copy(Path(conformer_hub) / "tokenizer.ckpt", root / "tokenizer.ckpt")
    shutil.rmtree(root / "w2v_cache", ignore_errors=True)
    return root


def build_enhancer_init(path):
    """A facebookresearch/denoiser-style checkpoint of a tiny DEMUCS."""
    import torch

    from robust_brain.models.demucs import Demucs

    torch.manual_seed(1)
    model = Demucs(hidden=4, depth=2, resample=1)
    torch.save({"class": "Demucs", "state": model.state_dict()}, path)
    return path


def build_d4am_real_stand_ins(out):
    """All stand-ins under ``out`` (built once; a marker file records it).

    Arguments
    ---------
    out : path-like

    Returns
    -------
    dict
        ``librispeech``, ``dns``, ``chime4``, ``proxy_hub``,
        ``w2v_proxy_hub`` (folders),
        ``enhancer_init`` (file) -> path.
    """
    out = Path(out)
    paths = {
        "librispeech": out / "LibriSpeech",
        "dns": out / "DNS-Challenge",
        "chime4": out / "CHiME4",
        "proxy_hub": out / "proxy_hub",
        "w2v_proxy_hub": out / "w2v_proxy_hub",
        "enhancer_init": out / "enhancer_init.pth",
    }
    marker = out / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == VERSION:
        return paths
    build_librispeech(paths["librispeech"])
    build_dns(paths["dns"])
    build_chime4(paths["chime4"])
    build_proxy_hub(paths["proxy_hub"])
    build_wav2vec2_proxy_hub(paths["w2v_proxy_hub"], paths["proxy_hub"])
    build_enhancer_init(paths["enhancer_init"])
    marker.write_text(json.dumps(VERSION))
    return paths


#: words of the GR CHiME-4 stand-in (a pangram: every letter occurs in the
#: training transcripts, so a character tokenizer has its full size)
PANGRAM = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"


def build_chime4_gr(root):
    """A CHiME-4 tree with what the GR recipe reads: tr05_simu (channel 5,
    WSJ0 originals as clean references, its ``.dot_all``), dt05 and et05
    real/simu of the 1-channel track with their booth recordings;
    environments bus and caf.

    Arguments
    ---------
    root : path-like

    Returns
    -------
    pathlib.Path
    """
    root = Path(root)
    iso = root / "data/audio/16kHz/isolated"
    ev = root / "data/audio/16kHz/isolated_1ch_track"
    words = PANGRAM.split()
    seed = 200
    for dataset in ("tr05", "dt05", "et05"):
        for kind in ("simu", "real"):
            if dataset == "tr05" and kind == "real":
                continue
            n_utts = 4 if dataset == "tr05" else 1
            lines = []
            for env in ("bus", "caf"):
                for u in range(n_utts):
                    spk = f"F0{1 + u % 2}"
                    wsj = f"{dataset[:2]}{kind[0]}C0{u}{env[0]}A".upper()
                    name = f"{spk}_{wsj}_{env.upper()}"
                    ch = 5 if dataset == "tr05" else 1 + (u + seed) % 6
                    folder = iso if dataset == "tr05" else ev
                    seconds = 0.6 + 0.1 * u
                    _audio(
                        folder / f"{dataset}_{env}_{kind}/{name}.CH{ch}.wav",
                        seconds,
                        seed,
                    )
                    if kind == "simu":
                        clean = (
                            iso / "tr05_org" / f"{spk}_{wsj}_ORG.wav"
                            if dataset == "tr05"
                            else iso / f"{dataset}_bth/{spk}_{wsj}_BTH.CH0.wav"
                        )
                        _audio(clean, seconds, seed + 1000)
                    k = (seed + u) % len(words)
                    text = " ".join(words[k:] + words[:k][:2])
                    lines.append(f"{text} ({name})")
                    seed += 1
            path = root / f"data/transcriptions/{dataset}_{kind}.dot_all"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    return root


def build_rats_gr(root):
    """The ESPnet joint enh + ASR data folders of the GR authors' RATS
    channel A recipe, 8 kHz: ``data/rats_Ach_waveform_8k_joint_enh_asr_
    {train,valid,test}`` with ``wav.scp`` / ``spk1.scp`` / ``text_spk1``
    pointing at ``dump/raw/...`` (relative, as ESPnet writes them).

    Arguments
    ---------
    root : path-like

    Returns
    -------
    pathlib.Path
    """
    root = Path(root)
    words = PANGRAM.split()
    seed = 500
    for split, n_utts in (("train", 6), ("valid", 2), ("test", 2)):
        folder = root / f"data/rats_Ach_waveform_8k_joint_enh_asr_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        scp, spk1, text = [], [], []
        for u in range(n_utts):
            utt = f"{split}_{u:03d}"
            seconds = 0.6 + 0.1 * (u % 3)
            for kind, lines, s in (("noisy", scp, seed), ("clean", spk1, seed)):
                rel = f"dump/raw/{split}/{kind}/{utt}.wav"
                _audio(root / rel, seconds, s + (kind == "clean"), sr=8000)
                lines.append(f"{utt} {rel}")
            k = seed % len(words)
            text.append(f"{utt} {' '.join(words[k:] + words[:k][:2])}")
            seed += 1
        for name, lines in (
            ("wav.scp", scp),
            ("spk1.scp", spk1),
            ("text_spk1", text),
        ):
            (folder / name).write_text("\n".join(lines) + "\n")
    return root
