"""Convert pip-bundled pretrained models (command line).

Usage::

    python -m robust_brain.pretrained whisper --model tiny.en
    python -m robust_brain.pretrained whisper --model base --out DIR
    python -m robust_brain.pretrained whisper --model /path/to/ct2_folder

Without ``--out`` the checkpoint is converted once per machine into the
cache (``~/.cache/robust_brain/whisper-hf``) and its folder is printed: use
it as ``source:`` wherever a hub name (``openai/whisper-tiny.en``) goes.
"""

import argparse
import sys

from robust_brain.pretrained.assets import resolve_whisper_model
from robust_brain.pretrained.ct2 import CT2FormatError
from robust_brain.pretrained.whisper import (
    convert_ct2_whisper,
    whisper_checkpoint,
)


def main(argv=None) -> int:
    """Entry point; prints the converted folder."""
    parser = argparse.ArgumentParser(
        prog="python -m robust_brain.pretrained",
        description=__doc__.split("\n")[0],
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    whisper = sub.add_parser(
        "whisper", help="Whisper (CTranslate2) -> transformers folder"
    )
    whisper.add_argument(
        "--model",
        default="tiny.en",
        help="tiny.en, base, or a CTranslate2 Whisper folder",
    )
    whisper.add_argument(
        "--out", default=None, help="destination (default: the cache)"
    )
    args = parser.parse_args(argv)
    try:
        if args.out:
            folder = convert_ct2_whisper(
                resolve_whisper_model(args.model), args.out
            )
        else:
            folder = whisper_checkpoint(args.model)
    except (CT2FormatError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
