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


def _proxy_flags():
    from tests.utils.fake_corpora import PROXY_FLAGS

    return PROXY_FLAGS


#: ``{placeholder}`` -> builder of the resource's value (called once)
RESOURCES = {
    "mininoisy_tiny": _mininoisy_tiny,
    "librispeech_fake": _real("librispeech"),
    "dns_fake": _real("dns"),
    "chime4_fake": _real("chime4"),
    "proxy_hub_fake": _real("proxy_hub"),
    "proxy_hub_flags": _proxy_flags,
    "enhancer_init_fake": _real("enhancer_init"),
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
