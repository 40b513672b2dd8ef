"""Benchmark of the built-in codec on the shared real corpora; prints one JSON object.

    PYTHONPATH=src python bench/codec.py --data ../shared/data [--holdout SPEAKER] [--seeds 3] \
        [--reference speaker,utterance,absolute] [--continuous] [--out R.json]
    PYTHONPATH=src python bench/codec.py --data ../shared/data ... --variant 'old pitch_binning=quantile' \
        --variant 'new pitch_binning=uniform'                              # settings side by side
    PYTHONPATH=src python bench/codec.py --combine R1.json R2.json ...     # one table of several runs

The codec is trained on the three CASIA speakers other than ``--holdout`` plus the audio of ASED,
nEMO and URDU (``--extra-fraction`` of it; labels unused), never on the held-out speaker or ESD;
the audio is analysed once and the codec is trained once per ``--reference`` (utterance / speaker /
absolute; and per ``--variant``), each with every decoder it has (``cluster``: cluster-mean
envelopes; ``learned``: the small convolutional decoder, when trained with ``decoder=learned``). Test speakers' profiles come from their own recordings (as ``rrpo
tokenize`` computes them). Measured on CASIA's held-out speaker and on ESD English speaker 0020:

* prosody kept: Pearson correlation of original vs resynthesised F0 contours (DIO + StoneMask,
  10 ms, frames voiced in both; in semitones) and of frame-energy contours (dB, 10 ms frames);
* content kept: pocketsphinx (its bundled US-English model) WER on ESD English, original vs
  resynthesised;
* mel-cepstral distortion in dB, the audit's (``rrpo.audit.distances.mcd_dtw``: WORLD envelope,
  SPTK all-pass mel-cepstra c1..c24 with α 0.42, DTW-aligned);
* encode and decode real-time factors on one thread (seconds of audio per second of compute);
* the median F0 of the decoded speech vs the original speaker's (semitones; all voiced frames of the
  resynthesised set against all of the originals');
* codebook use: distinct tokens used out of the vocabulary, and the perplexity of the factors;
* emotion kept across languages: a 2-layer Transformer probe (d=128, attention pooling, 5 classes,
  ``--epochs`` epochs, bf16, ``--seeds`` seeds) trained on CASIA tokens of the three training speakers and tested on the
  held-out speaker and on ESD English, beside the same probe on continuous frames
  (80 log-mel + log-energy + log-F0 at 25 Hz). The token probe embeds each token by a learned
  linear map of the codec's ``token_features()`` (tied embeddings).

Not a test: it reads ``--data`` (research-only corpora, never copied) and takes a few minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

CLASSES = ("neutral", "happy", "angry", "sad", "surprise")
ESD_OFFSETS = {"Neutral": 0, "Angry": 350, "Happy": 700, "Sad": 1050, "Surprise": 1400}


# ------------------------------------------------------------------------------------------ data


def casia_files(root: Path) -> list[dict]:
    from rrpo.data.corpora.casia import read_transcripts

    out = []
    base = root / "casia" / "casia"
    texts = read_transcripts(base)
    for spk in sorted(p for p in base.iterdir() if p.is_dir()):
        for emo_dir in sorted(p for p in spk.iterdir() if p.is_dir()):
            for wav in sorted(emo_dir.glob("*.wav")):
                out.append(
                    {
                        "path": wav,
                        "speaker": spk.name,
                        "emotion": emo_dir.name,
                        "id": f"{spk.name}_{emo_dir.name}_{wav.stem}",
                        "sentence": int(wav.stem) if wav.stem.isdigit() else None,
                        "text": texts.get(int(wav.stem), "") if wav.stem.isdigit() else "",
                        "language": "zh",
                    }
                )
    return out


def esd_files(root: Path) -> list[dict]:
    base = root / "esd" / "Emotion Speech Dataset" / "0020"
    texts = {}
    for line in (base / "0020.txt").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            texts[parts[0].strip()] = parts[1].strip()
    out = []
    for emo in ESD_OFFSETS:
        for wav in sorted((base / emo).glob("*.wav")):
            out.append(
                {
                    "path": wav,
                    "speaker": "0020",
                    "emotion": emo.lower(),
                    "id": wav.stem,
                    "text": texts.get(wav.stem, ""),
                }
            )
    return out


def stage(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def load(path: Path, sr: int = 16000) -> np.ndarray:
    from rrpo.data.audio import load_audio

    return load_audio(path, sr)[0]


# --------------------------------------------------------------------------------------- metrics


def f0_track(x: np.ndarray, sr: int) -> np.ndarray:
    import pyworld as pw

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=60, f0_ceil=600, frame_period=10.0)
    return pw.stonemask(x, f0, t, sr)


def level_track(x: np.ndarray, sr: int, hop_s: float = 0.01) -> np.ndarray:
    hop = int(sr * hop_s)
    n = len(x) // hop
    fr = x[: n * hop].reshape(n, hop).astype(np.float64)
    return 10 * np.log10((fr**2).mean(1) + 1e-10)


def contour_corr(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if mask is not None:
        m = mask[:n]
        a, b = a[m], b[m]
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def mcd_dtw(x: np.ndarray, y: np.ndarray, sr: int) -> float:
    """The audit's MCD (rrpo.audit.distances.mcd_dtw: WORLD envelope, SPTK mel-cepstra α 0.42, c0 out, DTW)."""
    from rrpo.audit.distances import mcd_dtw as audit_mcd

    return audit_mcd(x, sr, y, sr)


class Recognizer:
    """pocketsphinx as the audit runs it: words of the transcript, normalised as the audit does."""

    def __init__(self):
        from rrpo.audit.distances import PocketsphinxRecognizer

        self.rec = PocketsphinxRecognizer()

    def __call__(self, x: np.ndarray) -> list[str]:
        from rrpo.audit.distances import normalise_words

        return normalise_words(self.rec.transcribe(x, 16000))


def word_edits(ref_text: str, hyp_words: list[str]) -> tuple[int, int]:
    """(S + D + I, reference words) of a transcript against the text."""
    from rrpo.audit.distances import normalise_words
    from rrpo.phones.inventory import edit_ops

    ref = normalise_words(ref_text)
    return sum(edit_ops(ref, hyp_words)), len(ref)


def speaker_probe(toks: dict, utts: list[dict], factor, seed: int = 0) -> float:
    """Speaker identity left in the content factor: accuracy (%) of a logistic regression on each
    utterance's normalised histogram of content ids, trained on the even sentences of every
    speaker and tested on the odd ones (other texts), so that what it uses is who speaks."""
    from sklearn.linear_model import LogisticRegression

    spk = sorted({u["speaker"] for u in utts})
    n_ids = int(max(factor(toks[u["id"]]).max() for u in utts)) + 1
    X = np.stack([np.bincount(factor(toks[u["id"]]), minlength=n_ids) / len(toks[u["id"]]) for u in utts])
    y = np.array([spk.index(u["speaker"]) for u in utts])
    sent = np.array([int(u.get("sentence", i)) for i, u in enumerate(utts)])
    tr, te = sent % 2 == 0, sent % 2 == 1
    clf = LogisticRegression(max_iter=2000, C=10.0, random_state=seed).fit(X[tr], y[tr])
    return round(100 * float((clf.predict(X[te]) == y[te]).mean()), 1)


def libri_files(manifest: Path, per_speaker: int) -> list[dict]:
    """Utterances of a LibriSpeech manifest (rrpo prepare librispeech), ``per_speaker`` at most each."""
    from rrpo.data.manifest import read_manifest

    man = read_manifest(manifest)
    out, seen = [], {}
    for u in man:
        if seen.setdefault(u.speaker, 0) < per_speaker:
            seen[u.speaker] += 1
            out.append({"id": u.id, "path": man.audio_path(u), "speaker": u.speaker, "text": u.text, "language": "en"})
    return out


# ---------------------------------------------------------------------------------------- probe


def continuous_frames(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """(T, 82): 80 log-mel, log-energy, log-F0 (0 when unvoiced) at 25 Hz."""
    import librosa

    hop = sr // 25
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=1024, hop_length=hop, n_mels=80, center=True)
    T = mel.shape[1]
    logmel = np.log(mel + 1e-8).T  # (T, 80)
    from rrpo.codec.base import frame_energy

    le = np.log(frame_energy(x, sr, 25, T) + 1e-8)[:, None]
    f0 = f0_track(x, sr)
    idx = np.minimum((np.arange(T) * 4), len(f0) - 1)
    lf = np.where(f0[idx] > 0, np.log(np.maximum(f0[idx], 1)), 0.0)[:, None]
    return np.concatenate([logmel, le, lf], 1).astype(np.float32)


def train_probe(train, test_sets, *, vocab_feats=None, in_dim=None, seed=0, epochs=40, batch=32):
    """Train the 2-layer Transformer probe; return {name: UA%} for each test set.

    ``train``/``test_sets[name]``: lists of (sequence, label). A sequence is (T,) int64 token ids
    when ``vocab_feats`` (V, F) is given, else (T, in_dim) float frames.
    """
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokens = vocab_feats is not None
    if tokens:
        vf = torch.tensor(vocab_feats, dtype=torch.float32)
        vf = (vf - vf.mean(0)) / (vf.std(0) + 1e-6)
    else:
        allf = np.concatenate([s for s, _ in train])
        mu, sd = allf.mean(0), allf.std(0) + 1e-6

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            d = 128
            self.inp = nn.Linear(vf.shape[1] if tokens else in_dim, d)
            self.pos = nn.Parameter(torch.zeros(512, d))
            layer = nn.TransformerEncoderLayer(d, 4, 256, dropout=0.1, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.att = nn.Linear(d, 1)
            self.out = nn.Linear(d, len(CLASSES))

        def forward(self, x, mask):  # mask True = valid
            h = self.inp(x) + self.pos[: x.shape[1]]
            h = self.enc(h, src_key_padding_mask=~mask)
            a = self.att(h).squeeze(-1).masked_fill(~mask, -1e4).softmax(-1)  # (B, T)
            return self.out((a.unsqueeze(-1) * h).sum(1))

    def batchify(items):
        T = min(512, max(len(s) for s, _ in items))
        B = len(items)
        if tokens:
            x = torch.zeros(B, T, vf.shape[1])
        else:
            x = torch.zeros(B, T, in_dim)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for i, (s, _) in enumerate(items):
            s = s[:T]
            x[i, : len(s)] = vf[torch.as_tensor(s)] if tokens else torch.as_tensor((s - mu) / sd)
            mask[i, : len(s)] = True
        y = torch.tensor([l for _, l in items])
        return x, mask, y

    model = Probe()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    steps = epochs * math.ceil(len(train) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps, pct_start=0.1)
    for _ in range(epochs):
        model.train()
        # length-bucketed batches (less padding), in random order
        order = rng.permutation(len(train))
        chunks = [
            sorted(order[k : k + 8 * batch], key=lambda i: len(train[i][0])) for k in range(0, len(order), 8 * batch)
        ]
        batches = [c[k : k + batch] for c in chunks for k in range(0, len(c), batch)]
        for bi in rng.permutation(len(batches)):
            x, m, y = batchify([train[i] for i in batches[bi]])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x, m).float(), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    res = {}
    with torch.no_grad():
        for name, items in test_sets.items():
            preds = []
            for k in range(0, len(items), 64):
                x, m, _ = batchify(items[k : k + 64])
                preds.append(model(x, m).argmax(-1).numpy())  # fp32 (the eval fast path rejects bf16)
            p = np.concatenate(preds)
            y = np.array([l for _, l in items])
            res[name] = round(100 * float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)])), 1)
    return res


# ----------------------------------------------------------------------------------------- main


def speed_only(args) -> int:
    from rrpo.codec import load_codec

    codec = load_codec(args.speed_only)
    rng = np.random.default_rng(0)
    utts = []
    for group in ([u for u in casia_files(args.data) if u["speaker"] == args.holdout], esd_files(args.data)):
        utts += [group[i] for i in rng.choice(len(group), 20, replace=False)]
    enc = dec = dur = 0.0
    for u in utts:
        x = load(u["path"])
        tok = codec.encode(x, 16000)
        times = []
        for f in (lambda x=x: codec.encode(x, 16000), lambda tok=tok: codec.decode(tok)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                f()
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        enc, dec, dur = enc + times[0], dec + times[1], dur + len(x) / 16000
    print(
        json.dumps(
            {
                "utterances": len(utts),
                "audio_seconds": round(dur, 1),
                "encode_rtf_best_of_3": round(dur / enc, 1),
                "decode_rtf_best_of_3": round(dur / dec, 1),
            }
        )
    )
    return 0


def extra_files(root: Path, fraction: float, seed: int = 0) -> list[dict]:
    """ASED, nEMO and URDU clips (labels unused) through rrpo's own preparers; ``fraction`` of each
    corpus' clips, drawn at random."""
    import rrpo.data.corpora.ased  # noqa: F401  (registers the preparers)
    import rrpo.data.corpora.nemo  # noqa: F401
    import rrpo.data.corpora.urdu  # noqa: F401
    from rrpo.data.corpora import PREPARERS

    out = []
    rng = np.random.default_rng(seed)
    for corpus in ("ased", "nemo", "urdu"):
        if not (root / corpus).exists():
            continue
        recs = PREPARERS[corpus](root / corpus)
        keep = rng.random(len(recs)) < fraction
        out += [
            {"path": Path(u.audio), "speaker": f"{corpus}:{u.speaker}", "id": u.id} for u, k in zip(recs, keep) if k
        ]
    return out


def manifest_files(manifests: list[Path], hours: float, seed: int = 0) -> list[dict]:
    """Utterances of rrpo manifests (texts unused), at most ``hours`` of each (the experiment's seeded
    draw, ``rrpo.experiment.phones.draw_hours``; 0: all)."""
    from rrpo.data.manifest import read_manifest
    from rrpo.experiment.phones import draw_hours

    out = []
    for m in manifests:
        man = read_manifest(m)
        recs = list(man)
        for u in draw_hours(recs, hours, seed) if hours else recs:
            out.append({"id": u.id, "path": man.audio_path(u), "speaker": u.speaker})
    return out


def ceiling_audio(x: np.ndarray, cfg, fr, kind: str) -> np.ndarray:
    """Resynthesis without the quantiser. ``world``: WORLD analysis-synthesis on the codec's synthesis
    grid (DIO + StoneMask, CheapTrick, full D4C); ``unquantised``: the token frames' own F0, envelope
    and aperiodicity (one per 40 ms), interpolated onto that grid as the decoder interpolates tokens."""
    import pyworld as pw

    sr, period = cfg.sampling_rate, cfg.synthesis_period_ms
    x = np.ascontiguousarray(x, dtype=np.float64)
    if kind == "world":
        f0, t = pw.dio(x, sr, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=period)
        f0 = pw.stonemask(x, f0, t, sr)
        sp = pw.cheaptrick(x, f0, t, sr, f0_floor=cfg.f0_floor)
        ap = pw.d4c(x, f0, t, sr)
    else:
        from rrpo.codec.builtin import grid_f0, token_grid

        _, i0, i1, w = token_grid(len(fr.f0), cfg.frame_rate, period)
        lsp = np.log(fr.sp.astype(np.float64) + 1e-12)
        sp = np.exp((1 - w) * lsp[i0] + w * lsp[i1])
        ap = np.clip((1 - w) * fr.ap[i0] + w * fr.ap[i1], 0.0, 1.0).astype(np.float64)
        f0 = grid_f0(fr.f0, i0, i1, w)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), sr, period)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    peak = np.abs(y).max()
    return (y * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)


def _f32(fr):
    fr.sp = fr.sp.astype(np.float32)
    fr.ap = fr.ap.astype(np.float32)
    return fr


def combine(paths: list[Path]) -> int:
    """Merge the JSON of several runs (different --reference) into one object."""
    merged: dict = {"runs": []}
    for p in paths:
        d = json.loads(Path(p).read_text())
        merged["runs"].append({k: d[k] for k in ("command", "bench_seconds", "analysis_seconds") if k in d})
        for k, v in d.get("references", {}).items():
            merged.setdefault("references", {})[k] = v
        if "continuous_probe" in d:
            merged["continuous_probe"] = d["continuous_probe"]
    print(json.dumps(merged))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="the shared data folder (casia/, esd/, ased/, nemo/, urdu/)")
    ap.add_argument("--holdout", default="wangzhe", help="CASIA speaker held out of codec and probe training")
    ap.add_argument(
        "--reference",
        default="speaker,utterance,absolute",
        help="comma-separated codec references to compare (one codec each)",
    )
    ap.add_argument(
        "--extra-fraction",
        type=float,
        default=0.5,
        help="share of the ASED / nEMO / URDU clips added to the codec's training audio",
    )
    ap.add_argument("--resynth", type=int, default=20, help="CASIA held-out utterances resynthesised")
    ap.add_argument("--resynth-esd", type=int, default=30, help="ESD utterances resynthesised (WER)")
    ap.add_argument("--seeds", type=int, default=3, help="probe seeds (mean reported)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--continuous", action="store_true", help="also the continuous-frame probe")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument(
        "--limit", type=int, default=0, help="smoke test: at most this many utterances per speaker and emotion"
    )
    ap.add_argument(
        "--codec-out", type=Path, default=None, help="save the trained codec(s) here (one folder per reference)"
    )
    ap.add_argument("--combine", nargs="+", type=Path, default=None, help="merge the JSON files of earlier runs")
    ap.add_argument(
        "--speed-only",
        type=Path,
        default=None,
        metavar="CODEC",
        help="only time encode/decode of this trained codec: best of 3 per utterance, 20 "
        "utterances per set (less sensitive to other jobs on a shared machine)",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME k=v ...'",
        help="compare codec settings side by side in one run: each variant (a name, then config overrides "
        "applied after the common ones) trains its own codec per reference; rows are 'REFERENCE:NAME'",
    )
    ap.add_argument(
        "--phone-judge",
        type=Path,
        default=None,
        metavar="DIR",
        help="a phone model (rrpo phones train, trained on none of the test speakers): PER of the original and "
        "resynthesised utterances of every test set",
    )
    ap.add_argument(
        "--librispeech",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="a LibriSpeech manifest of speakers neither the codec nor its phone model heard: a third test set "
        "(WER, PER, MCD, F0), profiled from its own recordings",
    )
    ap.add_argument("--resynth-libri", type=int, default=3, help="LibriSpeech utterances resynthesised per speaker")
    ap.add_argument(
        "--train-manifest",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="more training audio for the codec (e.g. LibriSpeech speakers other than --librispeech's; labels and "
        "texts unused); a speaker of a test set there is an error",
    )
    ap.add_argument(
        "--train-manifest-hours",
        type=float,
        default=0.0,
        help="at most this many hours of each --train-manifest, drawn at random (0: all of it)",
    )
    ap.add_argument(
        "--ceilings",
        action="store_true",
        help="also resynthesise every test utterance without the quantiser: 'world' (WORLD analysis-synthesis "
        "at the codec's 5 ms grid, full envelope and aperiodicity) and 'unquantised' (the tokens' own per-40 ms "
        "F0, envelope and aperiodicity, interpolated as the decoder does): what the vocoder and the 25 Hz hold "
        "cost before any clustering",
    )
    ap.add_argument("overrides", nargs="*", help="codec config overrides, e.g. spectral_clusters=256")
    args = ap.parse_args(argv)
    if args.combine:
        return combine(args.combine)
    if args.data is None:
        ap.error("--data is required")

    import torch

    torch.set_num_threads(1)
    from rrpo.codec.builtin import BuiltinCodecConfig, analyse, train_from_frames
    from rrpo.config import load_config, to_dict

    t_start = time.perf_counter()
    if args.speed_only:
        return speed_only(args)
    refs = [r.strip() for r in args.reference.split(",") if r.strip()]
    base_cfg = load_config(BuiltinCodecConfig, None, args.overrides)
    casia = casia_files(args.data)
    esd = esd_files(args.data)
    if args.limit:

        def cap(utts):
            seen: dict = {}
            return [
                u
                for u in utts
                if seen.setdefault((u["speaker"], u.get("emotion")), []).append(1)
                or len(seen[(u["speaker"], u.get("emotion"))]) <= args.limit
            ]

        casia, esd = cap(casia), cap(esd)
    speakers = sorted({u["speaker"] for u in casia})
    if args.holdout not in speakers:
        raise SystemExit(f"--holdout must be one of {speakers}")
    casia_train = [u for u in casia if u["speaker"] != args.holdout]
    holdout = [u for u in casia if u["speaker"] == args.holdout]
    extra = extra_files(args.data, args.extra_fraction)
    if args.limit:
        extra = extra[:: max(1, len(extra) // (3 * args.limit))]
    more = manifest_files(args.train_manifest, args.train_manifest_hours)
    test_speakers = {u["speaker"] for u in esd} | {args.holdout}
    if args.librispeech:
        test_speakers |= {u["speaker"] for u in libri_files(args.librispeech, 1)}
    clash = sorted(test_speakers & {u["speaker"] for u in more})
    if clash:
        raise SystemExit(f"--train-manifest holds test speakers: {', '.join(clash[:5])}")
    train_utts = casia_train + extra + more
    out: dict = {
        "command": " ".join(sys.argv),
        "holdout_speaker": args.holdout,
        "references": {},
        "codec_train_audio": {
            "casia_speakers": sorted({u["speaker"] for u in casia_train}),
            "utterances": len(train_utts),
            "extra_utterances": len(extra),
            "extra_fraction": args.extra_fraction,
            "manifest_utterances": len(more),
            "manifests": [str(m) for m in args.train_manifest],
        },
    }
    stage(f"analysing {len(train_utts)} training + {len(holdout) + len(esd)} test utterances", t_start)

    # one WORLD analysis of everything (the learned decoder's dense targets for a share of the
    # training audio), reused by every reference's codec
    rng = np.random.default_rng([base_cfg.seed, 7])
    frames, t0 = {}, time.perf_counter()
    for u in train_utts if refs else []:  # --reference '' --continuous: the frame probe only
        dense = rng.random() < base_cfg.decoder_fraction
        frames[u["id"]] = _f32(analyse(load(u["path"]), base_cfg, dense=dense))
    t_analysis_train = time.perf_counter() - t0
    audio = {u["id"]: load(u["path"]) for u in holdout + esd}
    for u in holdout + esd if refs else []:
        frames[u["id"]] = _f32(analyse(audio[u["id"]], base_cfg))
    out["analysis_seconds"] = {
        "train": round(t_analysis_train, 1),
        "train_audio_seconds": round(sum(len(frames[u["id"]].f0) for u in train_utts if u["id"] in frames) / 25, 1),
    }
    stage("analysed", t_start)

    lab = {c: i for i, c in enumerate(CLASSES)}
    five = [u for u in casia_train if u["emotion"] in lab]
    te_c = [u for u in holdout if u["emotion"] in lab]
    esd_pick = [
        esd[i]
        for i in sorted(np.random.default_rng(0).choice(len(esd), min(args.resynth_esd, len(esd)), replace=False))
    ]
    hold_pick = [
        holdout[i]
        for i in sorted(np.random.default_rng(1).choice(len(holdout), min(args.resynth, len(holdout)), replace=False))
    ]
    libri = libri_files(args.librispeech, 3 * args.resynth_libri) if args.librispeech else []
    libri_pick = []
    for u in libri:
        audio[u["id"]] = load(u["path"])
        frames[u["id"]] = _f32(analyse(audio[u["id"]], base_cfg))
        if sum(v["speaker"] == u["speaker"] for v in libri_pick) < args.resynth_libri:
            libri_pick.append(u)
    test_sets = (("casia_holdout", hold_pick), ("esd_en", esd_pick)) + ((("librispeech", libri_pick),) if libri else ())
    rec = Recognizer()
    orig_words = {}
    for u in esd_pick + libri_pick if refs else []:
        orig_words[u["id"]] = rec(audio[u["id"]])
    judge = None
    if args.phone_judge:
        from rrpo.phones.judge import PhoneJudge

        judge = PhoneJudge.load(args.phone_judge)
        judged = [(n, u) for n, pick in test_sets for u in pick]
        orig_per = {
            u["id"]: judge.score(
                audio[u["id"]], 16000, u["text"], u.get("language", "zh" if n == "casia_holdout" else "en")
            )
            for n, u in judged
        }
        out["phone_judge"] = {
            **judge.describe(),
            "original": {n: judge.summarise([orig_per[u["id"]] for u in pick]) for n, pick in test_sets},
        }
        stage(
            f"phone judge on the originals: { {n: v['per'] for n, v in out['phone_judge']['original'].items()} }",
            t_start,
        )

    def measure_sets(render) -> dict:
        """F0 / energy correlation, MCD, median F0 offset, WER and PER of ``render(u)`` on every test set."""
        r: dict = {}
        dec_time = dec_audio = 0.0
        for name, pick in test_sets:
            f0c, enc_c, mcd, errs_o, errs_r, nref, f0_o, f0_r = [], [], [], 0, 0, 0, [], []
            per_rows = []
            for u in pick:
                x = audio[u["id"]]
                t1 = time.perf_counter()
                y = render(u)
                dec_time += time.perf_counter() - t1
                dec_audio += len(y) / 16000
                fo, fr = f0_track(x, 16000), f0_track(y, 16000)
                f0_o.append(fo[fo > 0])
                f0_r.append(fr[fr > 0])
                n = min(len(fo), len(fr))
                both = (fo[:n] > 0) & (fr[:n] > 0)
                f0c.append(contour_corr(12 * np.log2(np.maximum(fo[:n], 1)), 12 * np.log2(np.maximum(fr[:n], 1)), both))
                enc_c.append(contour_corr(level_track(x, 16000), level_track(y, 16000)))
                mcd.append(mcd_dtw(x, y, 16000))
                if name != "casia_holdout" and u.get("text"):
                    e_o, n_w = word_edits(u["text"], orig_words[u["id"]])
                    errs_o, errs_r, nref = errs_o + e_o, errs_r + word_edits(u["text"], rec(y))[0], nref + n_w
                if judge is not None:
                    lang = "zh" if name == "casia_holdout" else "en"
                    per_rows.append(judge.score(y, 16000, u["text"], lang))
            fo_all, fr_all = np.concatenate(f0_o), np.concatenate(f0_r)
            r[name] = {
                "utterances": len(pick),
                "f0_corr": round(float(np.nanmean(f0c)), 3),
                "energy_corr": round(float(np.nanmean(enc_c)), 3),
                "mcd_dtw_db": round(float(np.mean(mcd)), 2),
                "median_f0_offset_st": round(float(12 * np.log2(np.median(fr_all) / np.median(fo_all))), 2),
            }
            if nref:
                r[name]["wer_original"] = round(100 * errs_o / nref, 1)
                r[name]["wer_resynth"] = round(100 * errs_r / nref, 1)
            if per_rows:
                orig = judge.summarise([orig_per[u["id"]] for u in pick])["per"]["stat"]
                got = judge.summarise(per_rows)["per"]
                r[name]["per_original"] = round(100 * orig, 1)
                r[name]["per_resynth"] = round(100 * got["stat"], 1)
                r[name]["per_resynth_ci"] = [round(100 * got["lo"], 1), round(100 * got["hi"], 1)]
                r[name]["per_ratio"] = round(got["stat"] / orig, 2) if orig else None
        r["decode_rtf"] = round(dec_audio / dec_time, 1)
        return r

    if args.ceilings and refs:
        out["ceilings"] = {}
        for kind in ("world", "unquantised"):
            out["ceilings"][kind] = measure_sets(
                lambda u, kind=kind: ceiling_audio(audio[u["id"]], base_cfg, frames[u["id"]], kind)
            )
            stage(f"[ceiling {kind}] {out['ceilings'][kind]}", t_start)

    content_cache: dict = {}

    def with_content(cfg):
        """Frames of every utterance with the phone model's states attached (content=phonetic)."""
        if cfg.content != "phonetic":
            return frames
        if cfg.content_model not in content_cache:
            from rrpo.codec.builtin import content_states, load_content_model

            model = load_content_model(cfg)
            t1 = time.perf_counter()
            got = {}
            for k, fr in frames.items():
                x = audio[k] if k in audio else load(paths[k])
                got[k] = dataclasses.replace(fr, content=content_states(model, x, 16000, len(fr.f0)))
            content_cache[cfg.content_model] = (model, got, time.perf_counter() - t1)
        return content_cache[cfg.content_model][1]

    paths = {u["id"]: u["path"] for u in train_utts + holdout + esd + libri}

    variants = [v.split() for v in args.variant] or [[""]]
    if any(not v or "=" in v[0] for v in variants):
        raise SystemExit(
            "--variant takes a name first, then key=value overrides: --variant 'new pitch_binning=uniform'"
        )
    for ref, (vname, *vover) in [(r, v) for r in refs for v in variants]:
        cfg = load_config(BuiltinCodecConfig, None, [*args.overrides, *vover, f"reference={ref}"])
        row = f"{ref}:{vname}" if vname else ref
        t0 = time.perf_counter()
        vframes = with_content(cfg)
        t0 = time.perf_counter()
        model = content_cache[cfg.content_model][0] if cfg.content == "phonetic" else None
        codec, arrays, state = train_from_frames(
            cfg, ((u["speaker"], vframes[u["id"]]) for u in train_utts), content_model=model
        )
        t_train = time.perf_counter() - t0
        if args.codec_out:
            codec.save(args.codec_out / row.replace(":", "_"), arrays, state)
        stage(f"[{row}] codec trained in {t_train:.0f} s: {codec.stats}", t_start)
        res: dict = {
            "codec": to_dict(cfg),
            "train": codec.stats,
            "codec_train_seconds": round(t_train + t_analysis_train, 1),
            "codec_train_seconds_without_analysis": round(t_train, 1),
        }
        if cfg.content == "phonetic":
            res["content_model"] = {
                "path": cfg.content_model,
                "trained_on": model.meta.get("trained_on"),
                "train_seconds": (model.meta.get("times") or {}).get("train_s"),
                "states_seconds_this_bench": round(content_cache[cfg.content_model][2], 1),
            }
        profiles = dict(codec.profiles)
        profiles[args.holdout] = codec.profile_from_frames([frames[u["id"]] for u in holdout], args.holdout)
        profiles["0020"] = codec.profile_from_frames([frames[u["id"]] for u in esd], "0020")
        for spk in sorted({u["speaker"] for u in libri}):
            profiles[spk] = codec.profile_from_frames([frames[u["id"]] for u in libri if u["speaker"] == spk], spk)
        toks = {u["id"]: codec.quantise(vframes[u["id"]], profiles[u["speaker"]]) for u in five + holdout + esd + libri}
        res["speaker_probe_content"] = speaker_probe(toks, five + holdout, lambda t, c=codec: c.factors(t)[0])
        # encode real-time factor: full analysis + quantisation of 20 test utterances, one thread
        enc_t = enc_a = 0.0
        if model is not None:
            codec.content_model = model
        for u in hold_pick[:10] + esd_pick[:10]:
            x = audio[u["id"]]
            t1 = time.perf_counter()
            codec.encode(x, 16000, profile=profiles[u["speaker"]])
            enc_t += time.perf_counter() - t1
            enc_a += len(x) / 16000
        res["encode_rtf"] = round(enc_a / enc_t, 1)
        all_t = np.concatenate([toks[u["id"]] for u in five + holdout + esd])
        res["codebook"] = {"used": int(len(np.unique(all_t))), "vocab": codec.vocab_size}

        for dec in ("cluster", "learned") if codec.net is not None else ("cluster",):
            r = measure_sets(
                lambda u, dec=dec, c=codec, tk=toks, pr=profiles: c.decode(
                    tk[u["id"]], profile=pr[u["speaker"]], decoder=dec
                )
            )
            res[f"decoder_{dec}"] = r
            stage(f"[{row}] decoder {dec}: {r}", t_start)

        vf = codec.token_features()
        a = [(toks[u["id"]], lab[u["emotion"]]) for u in five]
        b = {
            "casia_holdout": [(toks[u["id"]], lab[u["emotion"]]) for u in te_c],
            "esd_en": [(toks[u["id"]], lab[u["emotion"]]) for u in esd],
        }
        runs = []
        for seed in range(args.seeds):
            runs.append(train_probe(a, b, vocab_feats=vf, seed=seed, epochs=args.epochs))
            stage(f"[{row}] token probe seed {seed}: {runs[-1]}", t_start)
        res["token_probe"] = {
            k: {"ua_mean": round(float(np.mean([q[k] for q in runs])), 1), "ua_runs": [q[k] for q in runs]}
            for k in runs[0]
        }
        if vname:
            res["variant"] = {"name": vname, "overrides": vover}
        out["references"][row] = res

    if args.continuous:
        conts = {
            u["id"]: continuous_frames(audio[u["id"]] if u["id"] in audio else load(u["path"]))
            for u in five + te_c + esd
        }
        a = [(conts[u["id"]], lab[u["emotion"]]) for u in five]
        b = {
            "casia_holdout": [(conts[u["id"]], lab[u["emotion"]]) for u in te_c],
            "esd_en": [(conts[u["id"]], lab[u["emotion"]]) for u in esd],
        }
        runs = []
        for seed in range(args.seeds):
            runs.append(train_probe(a, b, in_dim=82, seed=seed, epochs=args.epochs))
            stage(f"continuous probe seed {seed}: {runs[-1]}", t_start)
        out["continuous_probe"] = {
            k: {"ua_mean": round(float(np.mean([q[k] for q in runs])), 1), "ua_runs": [q[k] for q in runs]}
            for k in runs[0]
        }
    out["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(out)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())
