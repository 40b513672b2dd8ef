"""Scoring a policy for the over-optimisation audit: on a fixed prompt set with fixed sampling seeds,
generate, score the tokens with the run's reward models (the *proxy*, as the probability of the
target emotion), decode with the codec and score the audio with the independent judge, the
artifact detectors, the typicality of each utterance and the distances to the parallel real
recordings, the phone error rate against the prompt's text (with a phone judge: its own CTC phone
recogniser, :mod:`rrpo.phones.judge`, which the policy never sees), and measure d = √KL(π ‖ π_0) to
the starting policy on the generated tokens.

Every judged figure is anchored in real speech (:mod:`rrpo.audit.anchor`): before any policy is
scored, the judge's per-speaker statistics and the typicality reference are fixed from the speaker's
real recordings that the prompts do not use, passed through the codec. The same anchor judges the
*ceilings*: the prompts' parallel real recordings as recorded (normalised by the anchor's real
statistics) and passed through the codec (normalised as the policy is).

:class:`Scorer` is shared by ``rrpo audit`` (:mod:`rrpo.audit.overopt`, every checkpoint of a run)
and the optimiser's judge watch (composed in :mod:`rrpo.optimize.commands`). It imports no verb and
no verb's config: its inputs are models, a manifest and a few settings.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rrpo.audit.anchor import AnchorConfig, Typicality, anchor_recordings, check_anchor
from rrpo.audit.summary import audit_audio
from rrpo.config import check, option
from rrpo.data.audio import load_audio, save_audio
from rrpo.data.manifest import ManifestFilter
from rrpo.errors import RrpoError
from rrpo.optimize.relax import token_kl
from rrpo.policy.generate import generate, guided_logits
from rrpo.policy.settings import SamplingConfig

#: bumped when what the anchor computes changes (its cache is then recomputed)
ANCHOR_VERSION = 3


@dataclass
class AuditPrompts(ManifestFilter):
    """Held-out texts (default manifest: the run's prompts.manifest), each spoken in every target
    emotion; the manifest's recordings of the same text, speaker and emotion are the references."""

    max_texts: int = option(4, "distinct (text, speaker) pairs; each is spoken in every target emotion")
    samples: int = option(1, "samples per (text, speaker, emotion), each with its own sampling seed")

    def __post_init__(self):
        check(self.max_texts >= 1, "prompts.max_texts", "must be >= 1")
        check(self.samples >= 1, "prompts.samples", "must be >= 1")


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
    """Scores policies on a fixed prompt set: proxy (reward models), judge, artifacts, typicality,
    distances, √KL to the starting policy. Used by ``rrpo audit`` and by the optimiser's judge watch.

    ``prompts`` selects the held-out texts of ``man`` (a :class:`~rrpo.data.manifest.Manifest`);
    ``seed`` is the first sampling seed (one per prompt, the same for every policy scored);
    ``recognizer`` False skips the word error rate; ``profile_recordings`` recordings of ``man``
    (spread over the emotions, never a prompted text) profile a speaker the codec has no profile of;
    ``anchor`` chooses the real recordings that anchor the judge (:mod:`rrpo.audit.anchor`), kept in
    ``anchor_dir`` (their codec-passed WAVs and statistics; reused when the inputs match) when given;
    ``sources`` names the folders the starting policy, codec and judge were loaded from (the key of
    :meth:`score_start`'s cache and of the anchor's); ``phone_judge`` (a loaded
    :class:`~rrpo.phones.judge.PhoneJudge`, or None: no PER) scores every utterance's phone error rate,
    the ceilings' too, and its identity (folder and hashes of its files) joins both cache keys."""

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
        profile_recordings: int = 20,
        anchor: AnchorConfig | None = None,
        anchor_dir: Path | None = None,
        sources: dict[str, str] | None = None,
        phone_judge=None,
    ):
        self.start, self.rms, self.rm_names = start_policy, rms, rm_names
        self.phone_judge = phone_judge
        self.phone_judge_id = phone_judge.identity() if phone_judge is not None else None
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
        self.man = man
        self.anchor_cfg = anchor or AnchorConfig()
        speakers = list(dict.fromkeys(r["speaker"] for r in self.rows))
        texts = {r["text"] for r in self.rows}
        self.anchor_recs = {
            s: anchor_recordings(man, s, texts, self.emotions, self.anchor_cfg.splits, self.anchor_cfg.max_recordings)
            for s in speakers
        }
        check_anchor(self.anchor_recs, man.path)
        # each sample is decoded as the speaker it was asked to speak as: the codec's stored profile,
        # or (a speaker the codec never heard) one from up to ``profile_recordings`` of that speaker's
        # recordings that the prompts do not use, spread evenly over the emotions
        from rrpo.codec import profile_from_manifest

        self.profiles = {s: profile_from_manifest(codec, man, s, profile_recordings, texts) for s in speakers}
        self.stats = None  # the judge's statistics of the codec-passed anchor, per speaker
        self.real_stats = None  # ... of the anchor as recorded (the real-speech ceiling)
        self.typicality: Typicality | None = None
        self.ceilings: dict = {}
        self.anchor_dir = Path(anchor_dir) if anchor_dir is not None else None
        self._build_anchor()

    # -- the anchor ---------------------------------------------------------------------------------
    def anchor_key(self) -> tuple[str, dict]:
        """(hex key, what it hashes) of the anchor: codec and judge files, the anchor and reference
        recordings, the profiles, and the phone judge's identity when there is one (the ceilings'
        PER is cached with the anchor)."""
        import hashlib
        import json

        from rrpo.io import folder_digest

        what = {
            **{k: folder_digest(v) for k, v in sorted(self.sources.items()) if k in ("codec", "judge")},
            "anchor": {s: [u.id for u in us] for s, us in self.anchor_recs.items()},
            "references": sorted(self.references),
            "rows": [(r["speaker"], r["emotion"], r["ref_id"], r["text"]) for r in self.rows],
            "profiles": {k: None if v is None else v.to_dict() for k, v in self.profiles.items()},
            "version": ANCHOR_VERSION,
        }
        if self.phone_judge_id is not None:  # absent without one: the keys of earlier caches still match
            what["phone_judge"] = self.phone_judge_id
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20], what

    def _through_codec(self, audio: np.ndarray, sr: int, speaker: str) -> tuple[np.ndarray, np.ndarray]:
        prof = self.profiles.get(speaker)
        ids = self.codec.encode(audio, sr, profile=prof)
        out = self.codec.decode(ids, profile=prof) if len(ids) else np.zeros(160, np.float32)
        return np.asarray(out, dtype=np.float32), np.asarray(ids)

    def _build_anchor(self) -> None:
        """Fix the judge's statistics, the typicality reference and the ceilings from real speech."""
        key = None
        if self.anchor_dir is not None and self.sources:
            key, what = self.anchor_key()
            with _locked_dir(self.anchor_dir):
                if not self._read_anchor(key):
                    self._compute_anchor()
                    self._write_anchor(key, what)
            return
        self._compute_anchor()

    def _compute_anchor(self) -> None:
        from tqdm import tqdm

        from rrpo.audit.features import egemaps_functionals

        real, coded, groups, emos, ids = [], [], [], [], []
        todo = [(s, u) for s, us in self.anchor_recs.items() for u in us]
        sr_out = int(self.codec.sampling_rate)
        for s, u in tqdm(todo, desc="anchor (real speech through the codec)", unit="utt", leave=False, disable=None):
            a, sr = load_audio(self.man.audio_path(u))
            y, _ = self._through_codec(a, sr, s)
            real.append((a, sr))
            coded.append((y, sr_out))
            groups.append(s)
            emos.append(u.emotion)
            ids.append(u.id)
        self._anchor_audio = list(zip(ids, coded))
        feats = egemaps_functionals(coded)
        if type(self.judge).__name__ == "EgemapsJudge":  # the judge's own features: computed once
            self.stats = self.judge.group_stats(groups=groups, feats=feats)
        else:
            self.stats = self.judge.group_stats(coded, groups)
        self.real_stats = self.judge.group_stats(real, groups)
        self.typicality = Typicality(feats, groups, emos)
        self.anchor_ids = {"ids": ids, "speakers": groups, "emotions": emos}
        # the ceilings: the prompts' parallel recordings, as recorded and through the codec
        refs = []
        seen = set()
        for r in self.rows:
            if r["ref_id"] is not None and r["ref_id"] not in seen:
                seen.add(r["ref_id"])
                refs.append(r)
        if refs:
            meta = [
                {
                    "id": r["ref_id"],
                    "emotion": r["emotion"],
                    "speaker": r["speaker"],
                    "text": r["text"],
                    "language": r["language"],
                }
                for r in refs
            ]
            real_items = [self.references[r["ref_id"]] for r in refs]
            # the scale of the distances: each real recording against the same speaker's rendition of the
            # same sentence in the next emotion (two real renditions of one sentence by one speaker)
            by_text: dict[tuple, list[str]] = {}
            for r in refs:
                by_text.setdefault((r["text"], r["speaker"]), []).append(r["ref_id"])
            other = {}
            for ids in by_text.values():
                for j, i in enumerate(ids):
                    other[i] = ids[(j + 1) % len(ids)] if len(ids) > 1 else None
            coded_items, coded_ids = [], []
            for r, (a, sr) in zip(refs, real_items):
                y, t = self._through_codec(a, sr, r["speaker"])
                coded_items.append((y, sr_out))
                coded_ids.append(t)
            self.ceilings = {
                "real": audit_audio(
                    [(a, sr, {**m, "ref_id": other[m["id"]]}) for (a, sr), m in zip(real_items, meta)],
                    self.references,
                    self.judge,
                    judge_stats=self.real_stats,
                    recognizer=None if self.recognizer else False,
                    phone_judge=self.phone_judge,
                    frechet=False,
                    per_utterance=True,
                ),
                "codec": audit_audio(  # distances: the resynthesis against its own original
                    [
                        (a, sr, {**m, "tokens": t, "ref_id": m["id"]})
                        for (a, sr), m, t in zip(coded_items, meta, coded_ids)
                    ],
                    self.references,
                    self.judge,
                    judge_stats=self.stats,
                    typicality=self.typicality,
                    recognizer=None if self.recognizer else False,
                    phone_judge=self.phone_judge,
                    frechet=False,
                    per_utterance=True,
                ),
            }

    def _write_anchor(self, key: str, what: dict) -> None:
        import json

        from rrpo.io import atomic_open, write_json

        d = self.anchor_dir
        (d / "audio").mkdir(parents=True, exist_ok=True)
        for i, (y, sr) in self._anchor_audio:
            save_audio(d / "audio" / f"{i}.wav", y, sr)
        arrays = {f"typ/{k}": v for k, v in self.typicality.to_arrays().items()}
        for name, st in (("codec", self.stats), ("real", self.real_stats)):
            for g, (mu, sd) in st.items():
                arrays[f"{name}/{g}/mean"] = np.asarray(mu)
                arrays[f"{name}/{g}/std"] = np.asarray(sd)
        with atomic_open(d / "anchor.npz", "wb") as f:
            np.savez(f, **arrays)
        write_json(
            d / "anchor.json",
            json.loads(
                json.dumps(
                    {"key": key, "what": what, "recordings": self.anchor_ids, "ceilings": self.ceilings}, default=float
                )
            ),
        )

    def _read_anchor(self, key: str) -> bool:
        import json

        try:
            meta = json.loads((self.anchor_dir / "anchor.json").read_text(encoding="utf-8"))
            if meta.get("key") != key:
                return False
            with np.load(self.anchor_dir / "anchor.npz") as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            return False
        stats: dict[str, dict] = {"codec": {}, "real": {}}
        for k in arrays:
            if k.startswith(("codec/", "real/")) and k.endswith("/mean"):
                name, g = k.split("/", 1)[0], k.split("/", 1)[1].rsplit("/", 1)[0]
                stats[name][g] = (arrays[k], arrays[f"{name}/{g}/std"])
        self.stats, self.real_stats = stats["codec"], stats["real"]
        self.typicality = Typicality.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("typ/")})
        self.anchor_ids = meta["recordings"]
        self.ceilings = meta["ceilings"]
        return True

    def anchor_summary(self) -> dict:
        """What the audit records of its anchor: the recordings, where their codec-passed WAVs are."""
        return {
            **self.anchor_ids,
            "audio": str(self.anchor_dir / "audio") if self.anchor_dir is not None else None,
            "typicality_threshold": dict(self.typicality.threshold) if self.typicality else {},
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
                _write_start_cache(cache, key, what, point, ids)
                entry = _read_start_cache(cache, key)
                assert entry is not None
            summary, ids, mean_len_s = entry
        if audio_dir is not None:
            _link_audio(cache / "audio", audio_dir, [r["id"] for r in self.rows])
        lens = torch.tensor([len(x) for x in ids], dtype=torch.long)
        padded = torch.zeros(len(ids), max(int(lens.max()), 1), dtype=torch.long)
        for i, x in enumerate(ids):
            padded[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        return self._finish(summary, padded, lens, 0.0, mean_len_s)

    def start_key(self) -> tuple[str, dict]:
        """(hex key, what it hashes) of the starting policy's scored point: the policy's, codec's and
        judge's files, the prompt rows, the speakers' profiles, the sampling settings and seed, and the
        phone judge's identity when there is one."""
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
            "anchor": self.anchor_key()[0],
        }
        if self.phone_judge_id is not None:  # the start's PER is cached with it
            what["phone_judge"] = self.phone_judge_id
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
            generated.append((audio, self.codec.sampling_rate, {**r, "tokens": ids}))
            if audio_dir is not None:
                save_audio(audio_dir / f"{r['id']}.wav", audio, self.codec.sampling_rate)
        self.last_tokens = tokens
        # the judge's statistics are the anchor's (fixed from real speech before any policy was scored)
        return audit_audio(
            generated,
            self.references,
            self.judge,
            judge_stats=self.stats,
            typicality=self.typicality,
            recognizer=None if self.recognizer else False,
            phone_judge=self.phone_judge,
            per_utterance=True,
        )

    def _finish(self, summary: dict, ids: torch.Tensor, lens: torch.Tensor, kl: float, mean_len_s: float) -> dict:
        emotions = [r["emotion"] for r in self.rows]
        proxy, per = {}, {}
        with torch.no_grad():
            for name, rm in zip(self.rm_names, self.rms):
                d = next(rm.parameters()).device  # sampled ids are on the CPU; the reward model may not be
                per[name] = rm.reward(ids.to(d), lens.to(d), emotions).exp().float().cpu().numpy()
                proxy[name] = float(per[name].mean())
        first = self.rm_names[0] if self.rm_names else None
        if first is not None and summary.get("utterances"):
            summary = {
                **summary,
                "utterances": [{**u, "proxy_prob": float(p)} for u, p in zip(summary["utterances"], per[first])],
            }
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
def _locked_dir(folder: Path):
    """An exclusive lock on ``folder`` (created) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / ".lock"):
        yield


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
    """(summary, token ids per row, mean length) of a cache with ``key``; None when it is absent, of
    another key or unreadable (then it is recomputed)."""
    import json

    try:
        meta = json.loads((cache / "start.json").read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        with np.load(cache / "start_tokens.npz") as z:
            flat, lens = z["ids"], z["lens"]
        ids = np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []
        return meta["summary"], ids, float(meta["mean_len_s"])
    except (OSError, ValueError, KeyError):
        return None


def _write_start_cache(cache: Path, key: str, what: dict, point: dict, ids: list[np.ndarray]) -> None:
    import json

    from rrpo.io import atomic_open, write_json

    lens = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
    with atomic_open(cache / "start_tokens.npz", "wb") as f:
        np.savez(f, ids=flat, lens=lens)
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
