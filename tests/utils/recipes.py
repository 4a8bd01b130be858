"""SpeechBrain-style recipe test tables: ``tests/recipes/<Dataset>.csv``.

Columns: Task, Dataset, Script_file, Hparam_file, Data_prep_file,
Readme_file, test_debug_flags, test_debug_checks. Flags may hold
``{placeholders}`` filled by :data:`RESOURCES` (tiny generated corpora and
tiny local models), built once per test session.
"""

import csv
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE_TABLES = sorted((ROOT / "tests" / "recipes").glob("*.csv"))
#: where session resources are built (git-ignored; reused across sessions:
#: the builders skip what is complete)
RESOURCE_DIR = ROOT / "tests" / "tmp" / "resources"


@functools.cache
def _mininoisy_tiny() -> str:
    """A tiny MiniNoisy corpus (the generator's smallest size, no real
    prompts); needs the offline TTS voices of ``robust_brain.data.tts``."""
    from robust_brain.data.mini_corpora import generate

    out = RESOURCE_DIR / "mininoisy_tiny"
    generate(
        "mininoisy",
        out,
        size=0.005,
        seed=7,
        workers=2,
        real=False,
        log=lambda msg: None,
    )
    return str(out / "MiniNoisy")


@functools.cache
def _d4am_real() -> dict:
    from tests.utils.fake_corpora import build_d4am_real_stand_ins

    paths = build_d4am_real_stand_ins(RESOURCE_DIR / "d4am_real")
    return {k: str(v) for k, v in paths.items()}


def _real(key):
    return lambda: _d4am_real()[key]


def _tiny(kind):
    def build():
        from robust_brain.tiny_models import tiny_model_path

        return str(tiny_model_path(kind))

    return build


def _w2v_proxy_flags():
    from tests.utils.fake_corpora import W2V_PROXY_FLAGS

    return W2V_PROXY_FLAGS


def _proxy_flags():
    from tests.utils.fake_corpora import PROXY_FLAGS

    return PROXY_FLAGS


def _whisper(name):
    def build():
        from robust_brain.pretrained import whisper_checkpoint

        return str(whisper_checkpoint(name))

    return build


#: ``{placeholder}`` -> builder of the resource's value (called once)
RESOURCES = {
    "mininoisy_tiny": _mininoisy_tiny,
    "librispeech_fake": _real("librispeech"),
    "dns_fake": _real("dns"),
    "chime4_fake": _real("chime4"),
    "proxy_hub_fake": _real("proxy_hub"),
    "proxy_hub_flags": _proxy_flags,
    "enhancer_init_fake": _real("enhancer_init"),
    "w2v_proxy_hub_fake": _real("w2v_proxy_hub"),
    "w2v_proxy_hub_flags": _w2v_proxy_flags,
    "tiny_wav2vec2": _tiny("wav2vec2"),
    # the real Whisper tiny.en, converted from the pip package
    "whisper_tiny_en": _whisper("tiny.en"),
}


def fill_placeholders(flags: str) -> str:
    """Replace every ``{name}`` of :data:`RESOURCES` in ``flags`` (building
    the resource on first use).

    Example
    -------
    >>> fill_placeholders("--n=2 --rule=d4am")
    '--n=2 --rule=d4am'
    """
    names = set(re.findall(r"\{(\w+)\}", flags or ""))
    unknown = sorted(names - set(RESOURCES))
    if unknown:
        raise KeyError(f"unknown recipe-test placeholders {unknown}")
    for name in names:
        flags = flags.replace("{" + name + "}", str(RESOURCES[name]()))
    return flags


def recipe_rows():
    """All rows of all recipe tables, with an id ``<Dataset>_<n>``."""
    rows = []
    for table in RECIPE_TABLES:
        with open(table, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f)):
                row["id"] = f"{table.stem}_{i}"
                rows.append(row)
    return rows


def parse_checks(spec):
    """``file_exists=[a,b]`` -> ``{"file_exists": ["a", "b"]}``."""
    checks = {}
    for name, body in re.findall(r"(\w+)=\[([^\]]*)\]", spec or ""):
        checks[name] = [x.strip() for x in body.split(",") if x.strip()]
    return checks


@functools.cache
def _chime4_gr() -> str:
    """CHiME-4 stand-in for the GR recipe (tr05_simu, dt05/et05)."""
    from tests.utils.fake_corpora import build_chime4_gr

    out = RESOURCE_DIR / "chime4_gr" / "CHiME4"
    marker = out.parent / ".complete"
    if not marker.exists():
        build_chime4_gr(out)
        marker.write_text("1")
    return str(out)


RESOURCES["chime4_gr_fake"] = _chime4_gr


@functools.cache
def _rats_gr() -> str:
    """RATS channel A stand-in for the GR recipe (ESPnet data folders)."""
    from tests.utils.fake_corpora import build_rats_gr

    out = RESOURCE_DIR / "rats_gr" / "rats_chA"
    marker = out.parent / ".complete"
    if not marker.exists():
        build_rats_gr(out)
        marker.write_text("1")
    return str(out)


RESOURCES["rats_gr_fake"] = _rats_gr


@functools.cache
def _miniwhamr_tiny() -> str:
    """A tiny MiniWHAMR corpus (the generator's smallest size: 5/2/2
    mixtures); needs the offline TTS voices of ``robust_brain.data.tts``."""
    from robust_brain.data.mini_corpora import generate

    out = RESOURCE_DIR / "miniwhamr_tiny"
    generate(
        "miniwhamr",
        out,
        size=0.005,
        seed=7,
        workers=1,
        real=False,
        log=lambda msg: None,
    )
    return str(out / "MiniWHAMR")


@functools.cache
def _whamr_fake() -> dict:
    """A WHAMR!-layout copy of the tiny MiniWHAMR (``wav16k/max/<split>/
    <folder>/<utt1>_<lvl>_<utt2>_<lvl>.wav``) and a WSJ0-like folder of
    ``.dot`` transcripts, for the real recipes' preparation."""
    import csv
    import shutil

    src = Path(_miniwhamr_tiny())
    out = RESOURCE_DIR / "whamr_fake"
    whamr, wsj0 = out / "WHAMR", out / "wsj0"
    if not (out / ".complete").exists():
        shutil.rmtree(out, ignore_errors=True)
        columns = {
            "mix_wav": "mix_both_reverb",
            "s1_wav": "s1_anechoic",
            "s2_wav": "s2_anechoic",
            "noise_wav": "noise",
            "s1_alt_wav": "s1_reverb",
            "s2_alt_wav": "s2_reverb",
        }
        for split in ("tr", "cv", "tt"):
            with open(src / f"{split}_max.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            for i, row in enumerate(rows):
                u1, u2 = f"{split}{i:02d}a0{i}", f"{split}{i:02d}b0{i}"
                name = f"{u1}_1.5_{u2}_-1.5.wav"
                for col, folder in columns.items():
                    dst = whamr / "wav16k" / "max" / split / folder / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    wav = row[col].replace("$data_root", str(src))
                    shutil.copyfile(wav, dst)
                for utt, text in ((u1, row["s1_wrd"]), (u2, row["s2_wrd"])):
                    dot = wsj0 / "transcrp" / "dots" / split / f"{utt}.dot"
                    dot.parent.mkdir(parents=True, exist_ok=True)
                    dot.write_text(f"{text.lower()} ({utt})\n")
        (out / ".complete").write_text("1")
    return {"whamr": str(whamr), "wsj0": str(wsj0)}


def _tiny_model(kind):
    from robust_brain.tiny_models import tiny_model_path

    return lambda: str(tiny_model_path(kind))


RESOURCES["miniwhamr_tiny"] = _miniwhamr_tiny
RESOURCES["whamr_fake"] = lambda: _whamr_fake()["whamr"]
RESOURCES["wsj0_fake"] = lambda: _whamr_fake()["wsj0"]
RESOURCES.setdefault("tiny_wav2vec2", _tiny_model("wav2vec2"))
RESOURCES.setdefault("tiny_whisper", _tiny_model("whisper"))


def _tiny_teacher(kind):
    """A tiny local SSL teacher with 4 layers (distillation recipes)."""

    def build():
        from robust_brain.tiny_models import tiny_model_path

        return str(tiny_model_path(kind, num_hidden_layers=4))

    return build


RESOURCES["tiny_wavlm_teacher"] = _tiny_teacher("wavlm")
RESOURCES["tiny_hubert_teacher"] = _tiny_teacher("hubert")
