"""Evaluate speech front-ends with unseen recognisers (command line).

Every system's audio is transcribed FREE-RUNNING (never teacher-forced) by
each recogniser; WER uses Whisper's English normaliser on both sides (cpWER
for two-speaker separation manifests); SI-SDR / STOI / PESQ are added where
the manifest has clean references. Tables per condition (and per SNR, noise
type, RT60 bin when these vary) are printed and written with CSV / JSON /
PNG files to ``--out``. Transcripts are cached (``--cache``), so a re-run
decodes only new audio.

Usage::

    python -m robust_brain.evaluate \\
        --manifest data/MiniNoisy/test_pairs.csv \\
        --recognisers whisper-tiny.en,whisper-base \\
        --systems NOIS=noisy_wav,CLEAN=clean_wav,D4AM=folder:/path/enhanced \\
        --out results/eval_x

Systems (``NAME=SPEC``, comma separated): a manifest column (``noisy_wav``,
``clean_wav``, ``s1_wav+s2_wav`` for several streams),
``folder:/path`` (processed wavs named ``<ID>.wav`` or ``<ID>_s<k>.wav``),
``pretrained:/path`` (a front-end folder a recipe wrote, e.g.
``results/d4am_whisper_mini/1986/save/pretrained/D4AM``, run on the fly
through :class:`robust_brain.inference.Enhancer`)
or ``peer:NAME[:key=value...]``, an off-the-shelf enhancer run on the fly
on CPU (``pip install robust_brain[peers]``): ``peer:deepfilternet3``
(option ``atten_lim_db``, e.g. ``peer:deepfilternet3:atten_lim_db=12``),
``peer:rnnoise``, ``peer:noisereduce`` (options ``stationary``,
``prop_decrease``). Default: ``NOIS=noisy_wav,CLEAN=clean_wav``
(``MIX``/``ORACLE`` for separation manifests).

An enhancer checkpoint is evaluated on the fly with ``--enhancer_hparams
model.yaml --enhancer_ckpt FOLDER``: the HyperPyYAML file must define the
module under ``--enhancer_key`` (default ``enhancer``); its weights are read
from ``FOLDER/<key>.ckpt`` (a SpeechBrain checkpoint folder) or, if
``FOLDER`` is a checkpointer directory, from its newest ``CKPT+*/<key>.ckpt``
(or from a ``.ckpt`` file given directly). The module is called as
``enhancer(wavs, relative_lengths)`` (or ``enhancer(wavs)`` if its forward
takes one argument) on ``(batch, time)`` 16 kHz audio and returns
``(batch, time)`` or ``(batch, time, streams)``. From Python, pass callables
directly: ``robust_brain.evaluation.evaluate(manifest, {"ENH": fn})``.

Recognisers: ``whisper-tiny.en``, ``whisper-base`` (pip-bundled weights,
faster-whisper int8 on CPU), ``whisper:<CTranslate2 folder>``,
``hf:<transformers source>``, ``sb:<SpeechBrain source>``,
``sb-ctc:<SpeechBrain CTC source>``.
"""

import argparse
import platform
import shlex
import sys
from pathlib import Path

from robust_brain.evaluation.recognisers import (
    FasterWhisper,
    build_recogniser,
    default_cpu_threads,
)
from robust_brain.evaluation.report import format_report, write_results
from robust_brain.evaluation.runner import (
    evaluate,
    read_manifest,
    select_rows,
)


def parse_systems(text: str | None) -> dict[str, str] | None:
    """``"A=x,B=folder:/p"`` -> ``{"A": "x", "B": "folder:/p"}``. A spec
    without ``NAME=`` names itself; a name holds no ``:``, so the ``=`` of
    ``peer:NAME:key=value`` is not taken for one.

    Example
    -------
    >>> parse_systems("NOIS=noisy_wav,ENH=folder:/tmp/e")
    {'NOIS': 'noisy_wav', 'ENH': 'folder:/tmp/e'}
    >>> parse_systems("noisy_wav")
    {'noisy_wav': 'noisy_wav'}
    >>> parse_systems("DFN3-12dB=peer:deepfilternet3:atten_lim_db=12")
    {'DFN3-12dB': 'peer:deepfilternet3:atten_lim_db=12'}
    >>> parse_systems("peer:rnnoise,peer:noisereduce:stationary=1")
    {'peer:rnnoise': 'peer:rnnoise',
     'peer:noisereduce:stationary=1': 'peer:noisereduce:stationary=1'}
    """
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, sep, spec = item.strip().partition("=")
        if not sep or ":" in name:
            name = spec = item.strip()
        out[name] = spec
    return out


def load_enhancer(
    hparams_file: str,
    ckpt: str,
    key: str = "enhancer",
    overrides: str | None = None,
    device: str = "cpu",
):
    """Build ``hparams[key]`` from a HyperPyYAML file and load its weights.

    Arguments
    ---------
    hparams_file : str
        YAML defining the module under ``key``.
    ckpt : str
        ``.ckpt`` file, a checkpoint folder holding ``<key>.ckpt``, or a
        checkpointer directory (its newest ``CKPT+*`` folder is used).
    key : str
        Name of the module in the YAML and of its checkpoint file.
    overrides : str, optional
        HyperPyYAML overrides (YAML text).
    device : str
        Torch device.

    Returns
    -------
    torch.nn.Module
        In eval mode, on ``device``.
    """
    import torch
    from hyperpyyaml import load_hyperpyyaml

    with open(hparams_file) as f:
        hparams = load_hyperpyyaml(f, overrides)
    module = hparams[key]
    path = Path(ckpt)
    if path.is_dir():
        direct = path / f"{key}.ckpt"
        found = sorted(
            path.glob(f"CKPT+*/{key}.ckpt"), key=lambda p: p.parent.name
        )
        if direct.is_file():
            path = direct
        elif found:
            path = found[-1]
        else:
            raise FileNotFoundError(
                f"no {key}.ckpt in {ckpt} or its CKPT+* folders"
            )
    module.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=True)
    )
    return module.to(device).eval()


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="python -m robust_brain.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="pair or separation CSV")
    p.add_argument(
        "--data_root",
        help="replaces $data_root (default: the manifest's folder)",
    )
    p.add_argument(
        "--recognisers",
        default="whisper-tiny.en,whisper-base",
        help="comma list; 'none': signal metrics only",
    )
    p.add_argument(
        "--systems",
        help="NAME=SPEC,... with SPEC a column, folder:/path, "
        "pretrained:/path or peer:NAME[:key=value...] (see above)",
    )
    p.add_argument(
        "--enhancer_hparams", help="HyperPyYAML defining the enhancer"
    )
    p.add_argument("--enhancer_ckpt", help="checkpoint file or folder")
    p.add_argument("--enhancer_key", default="enhancer")
    p.add_argument("--enhancer_name", default="ENH", help="its system name")
    p.add_argument("--enhancer_overrides", help="HyperPyYAML overrides (YAML)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--cache",
        help="transcript cache file (default OUT/transcripts.sqlite; 'none')",
    )
    p.add_argument(
        "--metrics",
        default="si_sdr,stoi,pesq",
        help="signal metrics where clean references exist ('none')",
    )
    p.add_argument("--conditions", help="only these conditions (comma list)")
    p.add_argument(
        "--max_per_condition",
        type=int,
        help="first N utterances of each condition",
    )
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cpu_threads", type=int, default=default_cpu_threads())
    p.add_argument("--group_by", help="tables to print (default: useful ones)")
    p.add_argument(
        "--wide",
        action="store_true",
        help="one WER table with a column per system and recogniser",
    )
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    rows = read_manifest(args.manifest, args.data_root)
    conditions = args.conditions.split(",") if args.conditions else None
    try:
        rows = select_rows(
            rows,
            conditions,
            max_per_condition=args.max_per_condition,
            source=args.manifest,
        )
    except ValueError as err:  # e.g. a condition the manifest lacks
        print(err, file=sys.stderr)
        return 1
    if not rows:
        print("no utterance selected", file=sys.stderr)
        return 1
    systems = parse_systems(args.systems)
    if args.enhancer_hparams or args.enhancer_ckpt:
        if not (args.enhancer_hparams and args.enhancer_ckpt):
            print(
                "--enhancer_hparams and --enhancer_ckpt go together",
                file=sys.stderr,
            )
            return 2
        from robust_brain.evaluation.runner import default_systems

        systems = systems or default_systems(rows)
        systems[args.enhancer_name] = load_enhancer(
            args.enhancer_hparams,
            args.enhancer_ckpt,
            args.enhancer_key,
            args.enhancer_overrides,
            args.device,
        )
    recognisers = []
    specs = [s.strip() for s in args.recognisers.split(",") if s.strip()]
    for spec in [] if specs == ["none"] else specs:
        kwargs = {"batch_size": args.batch_size, "device": args.device}
        rec = build_recogniser(spec, **kwargs)
        if isinstance(rec, FasterWhisper):
            rec.cpu_threads = args.cpu_threads
        recognisers.append(rec)
    out = Path(args.out)
    cache = (
        None
        if args.cache == "none"
        else (args.cache or out / "transcripts.sqlite")
    )
    metrics = (
        []
        if args.metrics == "none"
        else [m for m in args.metrics.split(",") if m]
    )
    result = evaluate(
        rows,
        systems,
        recognisers,
        cache=cache,
        signal_metrics=metrics,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    groupings = args.group_by.split(",") if args.group_by else None
    report = format_report(result, groupings, wide=args.wide)
    argv_text = shlex.join(sys.argv[1:] if argv is None else list(argv))
    s = result.stats
    header = (
        f"Command: `python -m robust_brain.evaluate {argv_text}`\n\n"
        f"Machine: {platform.machine()}, {args.cpu_threads} CPU thread(s), "
        f"device {args.device}. {s['utterances']} utterances, "
        f"{s['decoded']} transcripts decoded, {s['cached']} from the cache, "
        f"{s['seconds']} s."
    )
    paths = write_results(result, out, header=header, wide=args.wide)
    print(report)
    print()
    print(
        f"decoded {s['decoded']}, cached {s['cached']}, skipped {s['skipped']}"
        f" in {s['seconds']} s"
    )
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
