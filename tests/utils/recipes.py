"""SpeechBrain-style recipe test tables: ``tests/recipes/<Dataset>.csv``.

Columns: Task, Dataset, Script_file, Hparam_file, Data_prep_file,
Readme_file, test_debug_flags, test_debug_checks. Flags may hold
``{placeholders}`` filled by :data:`RESOURCES` (tiny generated corpora and
tiny local models), built once per test session.
"""

import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE_TABLES = sorted((ROOT / "tests" / "recipes").glob("*.csv"))


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
