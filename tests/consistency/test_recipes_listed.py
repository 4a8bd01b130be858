"""Consistency of recipes, hparams and recipe tests (SpeechBrain style).

* every ``hparams/*.yaml`` is listed in a ``tests/recipes/*.csv`` row with
  test flags, and every file a row names exists;
* every top-level key of every hparams file is USED: referenced in the
  yaml (``<key>``), read by the row's script, or read by the library
  (``getattr(self.hparams, "key", ...)``, or ``hparams["key"]`` of a recipe
  driver, in ``robust_brain/``), or is one of
  SpeechBrain's run options that Brain reads from hparams.
"""

import re

import pytest
import speechbrain as sb

from tests.utils.recipes import ROOT, recipe_rows

ROWS = recipe_rows()
HPARAMS = sorted((ROOT / "hparams").glob("*.yaml"))
LIBRARY = "\n".join(
    p.read_text(encoding="utf-8") for p in (ROOT / "robust_brain").rglob("*.py")
)
RUN_OPTIONS = set(sb.core.RunOptions().as_dict())


def top_level_keys(text):
    return re.findall(r"^([A-Za-z_][\w]*)\s*:", text, flags=re.MULTILINE)


def test_every_hparams_file_is_listed_with_flags():
    listed = {row["Hparam_file"] for row in ROWS}
    for path in HPARAMS:
        rel = path.relative_to(ROOT).as_posix()
        assert rel in listed, f"{rel} is not in any tests/recipes/*.csv"
    for row in ROWS:
        assert row["test_debug_flags"].strip(), row["id"]


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_listed_files_exist(row):
    for col in ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file"):
        if row[col]:
            assert (ROOT / row[col]).exists(), f"{row['id']}: {row[col]}"


def key_is_used(key, yaml_text, script_text):
    if key.startswith("__") or key in RUN_OPTIONS:
        return True
    if re.search(rf"<{key}[\]\[>]", yaml_text):
        return True
    script_patterns = [
        rf"hparams\[\"{key}\"\]",
        rf"hparams\.{key}\b",
        rf"hparams\.get\(\"{key}\"",
        rf"\"{key}\"",
    ]
    if any(re.search(p, script_text) for p in script_patterns):
        return True
    # the Brain's hparams, or a recipe's hparams mapping handed to a
    # library driver (e.g. robust_brain.methods.d4am.train_systems)
    library_patterns = [
        rf"hparams, \"{key}\"",
        rf"hparams\.{key}\b",
        rf"hparams\[\"{key}\"\]",
        rf"hparams\.get\(\"{key}\"",
    ]
    return any(re.search(p, LIBRARY) for p in library_patterns)


@pytest.mark.parametrize("path", HPARAMS, ids=[p.name for p in HPARAMS] or None)
def test_every_top_level_key_is_used(path):
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT).as_posix()
    scripts = {r["Script_file"] for r in ROWS if r["Hparam_file"] == rel}
    script_text = "\n".join(
        (ROOT / s).read_text(encoding="utf-8") for s in scripts
    )
    unused = [
        k for k in top_level_keys(text) if not key_is_used(k, text, script_text)
    ]
    assert not unused, f"{rel}: unused top-level keys {unused}"


def test_checker_catches_an_unused_key():
    assert not key_is_used("nobody_reads_me", "a: 1", "hparams['x']")
    assert key_is_used("lr", "opt: !name:x {lr: !ref <lr>}", "")
    assert key_is_used("data_folder", "", 'hparams["data_folder"]')
