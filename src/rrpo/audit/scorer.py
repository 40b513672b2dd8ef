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
    index = {(u.text, u.speaker, u.emotion): u for u in sel}
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
    profile a speaker the codec has no profile of."""

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
    ):
        self.start, self.rms, self.rm_names = start_policy, rms, rm_names
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
        emotions = [r["emotion"] for r in self.rows]
        with torch.no_grad():
            T = gen.ids.shape[1]
            if T == 0:
                raise RrpoError("the policy generated only empty sequences")
            w = gen.guidance  # KL between the distributions sampled from (guided where sampling.guidance != 1)
            lp = guided_logits(policy, gen.prompts, gen.ids, gen.lens, w)[:, :T]
            lq = guided_logits(self.start, gen.prompts, gen.ids, gen.lens, w)[:, :T].to(lp.device)
            mask = torch.arange(T, device=lp.device)[None] < gen.lens.to(lp.device)[:, None]
            kl = float(token_kl(lp, lq, mask).mean())
            proxy = {}
            for name, rm in zip(self.rm_names, self.rms):
                d = next(rm.parameters()).device  # sampled ids are on the CPU; the reward model may not be
                proxy[name] = float(rm.reward(gen.ids.to(d), gen.lens.to(d), emotions).exp().mean())
        generated = []
        for i, r in enumerate(self.rows):
            ids = gen.tokens(i).numpy()
            prof = self.profiles.get(r["speaker"])
            audio = (
                (self.codec.decode(ids) if prof is None else self.codec.decode(ids, profile=prof))
                if len(ids)
                else np.zeros(160, np.float32)
            )
            generated.append((audio, self.codec.sampling_rate, {**r, "speaker": "*", "tokens": ids}))
            if audio_dir is not None:
                save_audio(audio_dir / f"{r['id']}.wav", audio, self.codec.sampling_rate)
        if self.stats is None and hasattr(self.judge, "group_stats"):
            # fixed normalisation from the starting policy's own outputs, so a drift of every
            # emotion in one direction is not normalised away at later checkpoints
            self.stats = self.judge.group_stats([(a, sr) for a, sr, _ in generated])
        summary = audit_audio(
            generated,
            self.references,
            self.judge,
            judge_stats=self.stats,
            recognizer=None if self.recognizer else False,
            per_utterance=True,
        )
        first = self.rm_names[0] if self.rm_names else None
        summary.update(
            {
                "kl": kl,
                "sqrt_kl": math.sqrt(max(kl, 0.0)),
                "proxy": proxy,
                "proxy_prob": proxy.get(first, float("nan")),
                "hacking_gap": proxy.get(first, float("nan")) - summary["judge"]["target_prob"],
                "mean_len_s": float(gen.lens.float().mean()) / self.codec.frame_rate,
            }
        )
        return summary
