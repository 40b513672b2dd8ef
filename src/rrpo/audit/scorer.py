"""Scoring a policy for the over-optimisation audit: on a fixed prompt set with fixed sampling seeds,
generate, score the tokens with the run's reward models (the *proxy*, as the probability of the
target emotion), decode with the codec and score the audio with the independent judge, the
artifact detectors and the distances to the parallel real recordings, and measure
d = √KL(π ‖ π_0) to the starting policy on the generated tokens.

:class:`Scorer` is shared by ``rrpo audit`` (:mod:`rrpo.audit.overopt`, every checkpoint of a run)
and the optimiser's judge watch (composed in :mod:`rrpo.optimize.commands`). It imports no verb and
no verb's config: its inputs are models, a manifest and a few settings.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rrpo.audit.summary import audit_audio
from rrpo.config import check, option
from rrpo.data.audio import load_audio, save_audio
from rrpo.data.manifest import ManifestFilter
from rrpo.errors import RrpoError
from rrpo.optimize.relax import token_kl
from rrpo.policy.generate import generate, guided_logits
from rrpo.policy.settings import SamplingConfig


@dataclass
class AuditPrompts(ManifestFilter):
    """Held-out texts (default manifest: the run's prompts.manifest), each spoken in every target
    emotion; the manifest's recordings of the same text, speaker and emotion are the references."""

    max_texts: int = option(4, "distinct (text, speaker) pairs; each is spoken in every target emotion")
    samples: int = option(1, "samples per (text, speaker, emotion), each with its own sampling seed")

    def __post_init__(self):
        check(self.max_texts >= 1, "prompts.max_texts", "must be >= 1")
        check(self.samples >= 1, "prompts.samples", "must be >= 1")


def hacking_flags(proxy: Sequence[float], judge: Sequence[float], margin: float) -> list[bool]:
    """Per point: since the point where the judge was best so far, did the proxy rise by more than
    ``margin`` while the judge fell by more than ``margin``? Example with margin 0.05: proxy
    (0.3, 0.5, 0.7), judge (0.4, 0.45, 0.3) → (False, False, True)."""
    flags, best = [], 0
    for i in range(len(proxy)):
        if judge[i] >= judge[best]:
            best = i
        flags.append(bool(proxy[i] - proxy[best] > margin and judge[best] - judge[i] > margin))
    return flags


def _prompt_set(prompts: AuditPrompts, man, emotions: list[str]) -> list[dict]:
    sel = prompts.apply(man)
    pairs = []
    for u in sel:
        key = (u.text, u.language, u.speaker)
        if key not in pairs:
            pairs.append(key)
    pairs = pairs[: prompts.max_texts]
    if not pairs:
        raise RrpoError("no prompts left after the audit's manifest filters", man.path)
    # a record without an emotion label (extra.emotion_labelled: false) is no reference of its placeholder
    index = {(u.text, u.speaker, u.emotion): u for u in sel if u.emotion_labelled}
    rows = []
    for ti, (text, lang, spk) in enumerate(pairs):
        for emo in emotions:
            ref = index.get((text, spk, emo))
            for k in range(prompts.samples):
                rows.append(
                    {
                        "id": f"t{ti}_{emo}" + (f"_k{k}" if k else ""),
                        "text": text,
                        "language": lang,
                        "speaker": spk,
                        "emotion": emo,
                        "ref_id": ref.id if ref is not None else None,
                    }
                )
    return rows


class Scorer:
    """Scores policies on a fixed prompt set: proxy (reward models), judge, artifacts, distances,
    √KL to the starting policy. Used by ``rrpo audit`` and by the optimiser's judge watch.

    ``prompts`` selects the held-out texts of ``man`` (a :class:`~rrpo.data.manifest.Manifest`);
    ``seed`` is the first sampling seed (one per prompt, the same for every policy scored);
    ``recognizer`` False skips the word error rate; ``profile_recordings`` recordings of ``man``
    profile a speaker the codec has no profile of; ``sources`` names the folders the starting
    policy, codec and judge were loaded from (the key of :meth:`score_start`'s cache)."""

    def __init__(
        self,
        start_policy,
        rms: list,
        rm_names: list[str],
        codec,
        judge,
        man,
        *,
        prompts: AuditPrompts,
        sampling: SamplingConfig,
        seed: int = 1234,
        recognizer: bool = True,
        bf16: bool = False,
        profile_recordings: int = 10,
        sources: dict[str, str] | None = None,
    ):
        self.start, self.rms, self.rm_names = start_policy, rms, rm_names
        self.sources = dict(sources or {})  # name -> folder of the start policy, codec, judge (start cache key)
        self.last_tokens: list[np.ndarray] = []
        self.codec, self.judge = codec, judge
        self.prompts, self.sampling, self.seed, self.recognizer, self.bf16 = prompts, sampling, seed, recognizer, bf16
        known = set(judge.classes)
        for rm in rms:
            known &= set(rm.classes)
        if start_policy.emotions:
            known &= set(start_policy.emotions)
        emotions = list(prompts.emotions) or [e for e in judge.classes if e in known]
        bad = [e for e in emotions if e not in known]
        if bad or not emotions:
            raise RrpoError(
                f"audit emotions {bad or emotions} are not known to the policy, reward models and judge "
                f"together (common: {sorted(known)})"
            )
        self.emotions = emotions
        self.rows = _prompt_set(prompts, man, emotions)
        self.references = {}
        by_id = man.by_id()
        for r in self.rows:
            if r["ref_id"] is not None and r["ref_id"] not in self.references:
                u = by_id[r["ref_id"]]
                self.references[r["ref_id"]] = load_audio(man.audio_path(u))
        self.stats = None
        # each sample is decoded as the speaker it was asked to speak as: the codec's stored
        # profile, or (a speaker the codec never heard) one from up to ``profile_recordings`` of that
        # speaker's recordings in ``man``
        from rrpo.codec import profile_from_manifest

        self.profiles = {
            spk: profile_from_manifest(codec, man, spk, profile_recordings)
            for spk in dict.fromkeys(r["speaker"] for r in self.rows)
        }

    def _encode(self, policy):
        use_spk = policy.speaker_embedding is not None
        return policy.encode_prompts(
            [r["text"] for r in self.rows],
            [r["emotion"] for r in self.rows],
            [r["language"] for r in self.rows],
            [r["speaker"] for r in self.rows] if use_spk else None,
        )

    def score(self, policy, audio_dir: Path | None = None) -> dict:
        prompts = self._encode(policy)
        seeds = [self.seed + i for i in range(len(self.rows))]
        gen = generate(policy, prompts, self.sampling, seeds, return_noise=False, bf16=self.bf16)
        T = gen.ids.shape[1]
        if T == 0:
            raise RrpoError("the policy generated only empty sequences")
        if policy is self.start:
            kl = 0.0  # the starting policy against itself
        else:
            with torch.no_grad():
                w = gen.guidance  # KL between the distributions sampled from (guided where sampling.guidance != 1)
                lp = guided_logits(policy, gen.prompts, gen.ids, gen.lens, w)[:, :T]
                lq = guided_logits(self.start, gen.prompts, gen.ids, gen.lens, w)[:, :T].to(lp.device)
                mask = torch.arange(T, device=lp.device)[None] < gen.lens.to(lp.device)[:, None]
                kl = float(token_kl(lp, lq, mask).mean())
        summary = self._audio_summary([gen.tokens(i).numpy() for i in range(len(self.rows))], audio_dir)
        mean_len_s = float(gen.lens.float().mean()) / self.codec.frame_rate
        return self._finish(summary, gen.ids, gen.lens, kl, mean_len_s)

    def score_start(self, cache: Path, audio_dir: Path | None = None) -> dict:
        """The starting policy's point, scored once per ``cache`` folder: generation, decoding, judge,
        artifacts and distances depend only on the starting policy, the prompts, the sampling seeds,
        the codec and the judge, so every audit of runs that start from the same policy (every
        system of an experiment's fold and seed) can share them. Only the proxy (this run's reward
        models) is computed anew, on the cached tokens. The cache's key hashes all of those inputs; a
        different key recomputes and replaces it. Audits sharing a cache at the same time wait for
        each other (a lock file), so it is computed once."""
        cache = Path(cache)
        cache.mkdir(parents=True, exist_ok=True)
        key, what = self.start_key()
        with _locked(cache / ".lock"):
            entry = _read_start_cache(cache, key)
            if entry is None:
                point = self.score(self.start, cache / "audio")
                ids = [self.last_tokens[i] for i in range(len(self.rows))]
                _write_start_cache(cache, key, what, point, ids, self.stats)
                entry = _read_start_cache(cache, key)
                assert entry is not None
            summary, ids, stats, mean_len_s = entry
        if self.stats is None:
            self.stats = stats
        if audio_dir is not None:
            _link_audio(cache / "audio", audio_dir, [r["id"] for r in self.rows])
        lens = torch.tensor([len(x) for x in ids], dtype=torch.long)
        padded = torch.zeros(len(ids), max(int(lens.max()), 1), dtype=torch.long)
        for i, x in enumerate(ids):
            padded[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        return self._finish(summary, padded, lens, 0.0, mean_len_s)

    def start_key(self) -> tuple[str, dict]:
        """(hex key, what it hashes) of the starting policy's scored point: the policy's, codec's and
        judge's files, the prompt rows, the speakers' profiles, the sampling settings and seed."""
        import hashlib
        import json
        from dataclasses import asdict

        from rrpo.io import folder_digest

        if not self.sources:
            raise RrpoError("the start point can be cached only when the scorer knows its model folders")
        what = {
            **{name: folder_digest(folder) for name, folder in sorted(self.sources.items())},
            "rows": self.rows,
            "profiles": {k: None if v is None else v.to_dict() for k, v in self.profiles.items()},
            "sampling": asdict(self.sampling),
            "seed": self.seed,
            "recognizer": self.recognizer,
            "bf16": self.bf16,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20], what

    def _audio_summary(self, tokens: list[np.ndarray], audio_dir: Path | None) -> dict:
        generated = []
        for r, ids in zip(self.rows, tokens):
            prof = self.profiles.get(r["speaker"])
            audio = (
                (self.codec.decode(ids) if prof is None else self.codec.decode(ids, profile=prof))
                if len(ids)
                else np.zeros(160, np.float32)
            )
            generated.append((audio, self.codec.sampling_rate, {**r, "speaker": "*", "tokens": ids}))
            if audio_dir is not None:
                save_audio(audio_dir / f"{r['id']}.wav", audio, self.codec.sampling_rate)
        self.last_tokens = tokens
        if self.stats is None and hasattr(self.judge, "group_stats"):
            # fixed normalisation from the starting policy's own outputs, so a drift of every
            # emotion in one direction is not normalised away at later checkpoints
            self.stats = self.judge.group_stats([(a, sr) for a, sr, _ in generated])
        return audit_audio(
            generated,
            self.references,
            self.judge,
            judge_stats=self.stats,
            recognizer=None if self.recognizer else False,
            per_utterance=True,
        )

    def _finish(self, summary: dict, ids: torch.Tensor, lens: torch.Tensor, kl: float, mean_len_s: float) -> dict:
        emotions = [r["emotion"] for r in self.rows]
        proxy = {}
        with torch.no_grad():
            for name, rm in zip(self.rm_names, self.rms):
                d = next(rm.parameters()).device  # sampled ids are on the CPU; the reward model may not be
                proxy[name] = float(rm.reward(ids.to(d), lens.to(d), emotions).exp().mean())
        first = self.rm_names[0] if self.rm_names else None
        return {
            **summary,
            "kl": kl,
            "sqrt_kl": math.sqrt(max(kl, 0.0)),
            "proxy": proxy,
            "proxy_prob": proxy.get(first, float("nan")),
            "hacking_gap": proxy.get(first, float("nan")) - summary["judge"]["target_prob"],
            "mean_len_s": mean_len_s,
        }


# ------------------------------------------------------------------ the shared start point's cache
_START_KEYS = ("kl", "sqrt_kl", "proxy", "proxy_prob", "hacking_gap", "mean_len_s")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` for the block (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_start_cache(cache: Path, key: str):
    """(summary, token ids per row, judge stats or None, mean length) of a cache with ``key``; None
    when it is absent, of another key or unreadable (then it is recomputed)."""
    import json

    try:
        meta = json.loads((cache / "start.json").read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        with np.load(cache / "start_tokens.npz") as z:
            flat, lens = z["ids"], z["lens"]
        ids = np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []
        stats = None
        if (cache / "judge_stats.npz").exists():
            with np.load(cache / "judge_stats.npz") as z:
                groups = sorted({k.split("/", 1)[1] for k in z.files})
                stats = {g: (z[f"mean/{g}"], z[f"std/{g}"]) for g in groups}
        return meta["summary"], ids, stats, float(meta["mean_len_s"])
    except (OSError, ValueError, KeyError):
        return None


def _write_start_cache(cache: Path, key: str, what: dict, point: dict, ids: list[np.ndarray], stats) -> None:
    import json

    from rrpo.io import atomic_open, write_json

    lens = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
    with atomic_open(cache / "start_tokens.npz", "wb") as f:
        np.savez(f, ids=flat, lens=lens)
    if stats is not None:
        with atomic_open(cache / "judge_stats.npz", "wb") as f:
            np.savez(f, **{f"{s}/{g}": v[j] for g, v in stats.items() for j, s in enumerate(("mean", "std"))})
    summary = {k: v for k, v in point.items() if k not in _START_KEYS}
    # written last: a cache without it (an interrupted computation) is recomputed
    write_json(
        cache / "start.json",
        json.loads(
            json.dumps({"key": key, "what": what, "mean_len_s": point["mean_len_s"], "summary": summary}, default=float)
        ),
    )


def _link_audio(src: Path, dst: Path, ids: list[str]) -> None:
    """The cached WAVs into ``dst`` (hard links where the file system allows, else copies)."""
    import os
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for i in ids:
        s, d = src / f"{i}.wav", dst / f"{i}.wav"
        if d.exists():
            d.unlink()
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
