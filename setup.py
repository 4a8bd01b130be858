"""Install robust_brain: ``pip install -e .[dev]``.

Core dependencies are pinned to the stack measured in
``../shared/docs/STACK.md``: torch and torchaudio MUST be pinned together
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
}

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
