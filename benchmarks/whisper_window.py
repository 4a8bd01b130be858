"""Whisper's encoder input for losses through it: cost vs fidelity.

A loss through Whisper (D4AM's proxy, GR's ASR, GPIT's encoder, the
distillation teacher) runs Whisper on short utterances. Whisper was trained
on 30 s windows; this script measures, side by side in one run and on the
same real-speech prompts (Debian's Asterisk prompts, one real speaker),
four ways to feed it:

* ``real``: the real frames only (the window rounded up to a whole second);
* ``10s`` / ``30s``: each utterance zero-padded to a 10 s / 30 s window
  (``WhisperASR(window_seconds=...)``);
* ``pack30``: the batch's utterances concatenated (0.3 s gaps) into 30 s
  windows, their transcripts joined: one padded pass for several
  utterances.

For each: teacher-forced cross-entropy (nats per transcript token), the
free-running greedy WER (Whisper-normalised) and the time of one forward
+ backward to the waveform per utterance (in batches of ``--batch``), on
clean speech and on pink noise at 5 dB SNR::

    python benchmarks/whisper_window.py --model tiny.en --prompts 40
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from robust_brain.data import degrade, tts
from robust_brain.evaluation.metrics import wer
from robust_brain.models.whisper import WhisperASR
from robust_brain.pretrained import whisper_checkpoint

SR = 16000
GAP = int(0.3 * SR)


def pad_batch(wavs):
    longest = max(len(w) for w in wavs)
    out = torch.zeros(len(wavs), longest)
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(w)
    return out


def pack(wavs, texts, seconds=30.0):
    """Greedy packing of utterances (in order) into windows of
    ``seconds``; returns the packed waveforms and joined transcripts."""
    limit = int(seconds * SR)
    packs, cur, cur_txt = [], [], []
    for w, t in zip(wavs, texts, strict=True):
        used = sum(len(x) + GAP for x in cur)
        if cur and used + len(w) > limit:
            packs.append((cur, cur_txt))
            cur, cur_txt = [], []
        cur.append(w)
        cur_txt.append(t)
    if cur:
        packs.append((cur, cur_txt))
    out_w, out_t = [], []
    for ws, ts in packs:
        gap = np.zeros(GAP, np.float32)
        out_w.append(np.concatenate([x for w in ws for x in (w, gap)]))
        out_t.append(" ".join(ts))
    return out_w, out_t


def measure(asr, wavs, texts, batch):
    """Mean CE (per token), greedy WER and the total fwd+bwd seconds."""
    ce_sum, n_tok, hyps, times = 0.0, 0, [], []
    for b in range(0, len(wavs), batch):
        w = pad_batch(wavs[b : b + batch]).requires_grad_(True)
        t = texts[b : b + batch]
        start = time.perf_counter()
        loss = asr.text_loss(w, t, reduction="batch")
        tok = asr.text_tokenizer()
        tokens = torch.tensor([len(tok.encode_as_ids(x)) + 1 for x in t])
        (loss * tokens).sum().div(tokens.sum()).backward()
        times.append(time.perf_counter() - start)
        ce_sum += float((loss.detach() * tokens).sum())
        n_tok += int(tokens.sum())
        hyps += asr.greedy_decode(w.detach())
    return ce_sum / n_tok, wer(texts, hyps), float(np.sum(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = tts.find_real_prompts()[: args.prompts]
    if not prompts:
        raise SystemExit(
            "no real prompts: apt-get install asterisk-core-sounds-en "
            "asterisk-core-sounds-en-g722 ffmpeg"
        )
    texts = [" ".join(p[1].split()) for p in prompts]
    clean = [tts.load_real_prompt(p[2]).astype(np.float32) for p in prompts]
    rng = np.random.default_rng(0)
    noisy = [
        degrade.mix_at_snr(w, degrade.colored_noise(len(w), "pink", rng), 5)[
            0
        ].astype(np.float32)
        for w in clean
    ]
    folder = str(whisper_checkpoint(args.model))
    seconds = np.mean([len(w) / SR for w in clean])
    print(
        f"Whisper {args.model}, {len(clean)} real prompts (mean "
        f"{seconds:.1f} s), batch {args.batch}, {args.threads} threads"
    )
    print(
        "| input | condition | CE (nats/token) | greedy WER (%) | "
        "fwd+bwd per utterance (ms) | cost vs 10s |"
    )
    print("|---|---|---|---|---|---|")
    for cond, wavs in (("clean", clean), ("pink 5 dB", noisy)):
        rows = {}
        for name, window in (("real", 0), ("10s", 10), ("30s", 30)):
            asr = WhisperASR(
                folder,
                tempfile.mkdtemp(),
                window_seconds=window,
                text_style="as_is",
            ).eval()
            asr.requires_grad_(False)
            rows[name] = measure(asr, wavs, texts, args.batch)
        packed_w, packed_t = pack(wavs, texts)
        rows["pack30"] = measure(asr, packed_w, packed_t, args.batch)
        for name, (ce, err, total) in rows.items():
            print(
                f"| {name} | {cond} | {ce:.3f} | {100 * err:.1f} | "
                f"{1000 * total / len(wavs):.0f} | "
                f"{total / rows['10s'][2]:.2f}x |"
            )


if __name__ == "__main__":
    main()
