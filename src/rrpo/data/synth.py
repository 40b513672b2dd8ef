"""The built-in synthetic emotional corpus: ``rrpo synth out=DIR``.

A parallel corpus that lets a user with no data run every stage: built-in neutral-content
sentences (:mod:`rrpo.data.sentences`) spoken by espeak-ng (:mod:`rrpo.data.espeak`) in Mandarin
and English, by several voices per language, in the five ESD emotions. Each emotion is a set of
prosody rules from the emotional-speech-synthesis literature (:data:`RULES`), applied through
espeak-ng's pitch, range and rate settings and a per-utterance gain, with modest seeded jitter.

Output::

    DIR/audio/<lang>/<speaker>/<emotion>/<id>.wav    16-bit mono WAV at ``sample_rate``
    DIR/manifest.jsonl                               one record per file, audio paths relative
    DIR/meta.json                                    {"synthetic": true, engine, config, rules}

Every file depends only on the config and its own id (seeded per utterance, fresh engine per
utterance), so the same config gives the same bytes, and a re-run skips the files that exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from rrpo.config import check, option, to_dict
from rrpo.data.emotions import ESD_CLASSES
from rrpo.data.manifest import Manifest, Utterance, write_manifest
from rrpo.data.sentences import SENTENCES, count_syllables, generate_sentences, grammar_size
from rrpo.errors import RrpoError
from rrpo.io import write_json

log = logging.getLogger(__name__)

#: espeak-ng language voice per manifest language.
LANGUAGE_VOICES: dict[str, str] = {"zh": "cmn", "en": "en-us"}

#: Neutral speaking rate per language, words per minute as espeak counts them (for Mandarin a
#: "word" is a character). Chosen so that neutral speech runs at about 4 syllables/s in both.
BASE_RATE: dict[str, int] = {"zh": 200, "en": 165}

#: Level of neutral speech, dBFS RMS over active frames (leaves room for +6 dB angry speech).
BASE_LEVEL_DB = -28.0


@dataclass(frozen=True)
class EmotionRule:
    """How one emotion changes prosody relative to neutral speech.

    ``f0`` scales the mean F0 (espeak pitch), ``f0_range`` the F0 excursions (espeak range),
    ``rate`` the speaking rate (espeak words/min), ``loudness_db`` is added to the utterance level;
    ``terminal`` replaces the sentence-final punctuation given to espeak ("" keeps it);
    ``source`` names the rule's origin.
    """

    f0: float
    f0_range: float
    rate: float
    loudness_db: float
    terminal: str
    source: str


# The rules. The directions come from the literature; the magnitudes are this module's reading of
# the sources' qualitative scales ("slightly" about 10 %, "much" about 25-80 %), kept inside what
# espeak-ng renders without breaking up (F0 0.73-1.77x, range 0-2x). Contour shape is rendered only
# through the final punctuation handed to espeak (a question tune for surprise, an exclamation for
# anger); docs/synth.md has the measured effects.
#
# [MA93] I. R. Murray & J. L. Arnott (1993), "Toward the simulation of emotion in synthetic speech:
#        a review of the literature on human vocal emotion", JASA 93(2):1097-1108, Table I.
# [BS00] F. Burkhardt & W. F. Sendlmeier (2000), "Verification of acoustical correlates of emotional
#        speech using formant-synthesis", ISCA Workshop on Speech and Emotion, Newcastle.
# [C90]  J. E. Cahn (1990), "The generation of affect in synthesized speech", Journal of the
#        American Voice I/O Society 8:1-19 (the Affect Editor; its surprise settings).
# [S01]  M. Schröder (2001), "Emotional speech synthesis: a review", Eurospeech 2001, 561-564,
#        Table 1 (a summary of the prosody rules of [BS00], [C90], [MA93] and others).
RULES: dict[str, EmotionRule] = {
    "neutral": EmotionRule(1.00, 1.00, 1.00, 0.0, "", "reference: the voice's own settings"),
    # [MA93] happiness: pitch average much higher, pitch range much wider, intensity higher, rate
    # "faster or slower", smooth upward inflections; [BS00] (via [S01]) joy: raised mean F0,
    # strongly widened F0 range, faster tempo.
    "happy": EmotionRule(1.25, 1.70, 1.08, 3.0, "", "Murray & Arnott 1993; Burkhardt & Sendlmeier 2000"),
    # [MA93] anger: pitch average very much higher, range much wider, intensity higher, rate
    # slightly faster, abrupt changes on stressed syllables.
    "angry": EmotionRule(1.35, 1.80, 1.15, 6.0, "!", "Murray & Arnott 1993"),
    # [MA93] sadness: pitch average slightly lower, range slightly narrower, intensity lower, rate
    # slightly slower, downward inflections; [BS00] (via [S01]): slower tempo, narrower range.
    # The range is narrowed more than "slightly": with the lower F0, a milder narrowing of the
    # excursions (in Hz) left the range in semitones unchanged.
    "sad": EmotionRule(0.88, 0.45, 0.80, -6.0, "", "Murray & Arnott 1993; Burkhardt & Sendlmeier 2000"),
    # [C90] (via [S01]) surprise: wide pitch range, faster, louder, rising end of utterance;
    # higher pitch as in the tables derived from [MA93].
    "surprise": EmotionRule(1.30, 1.95, 1.10, 4.0, "?", "Cahn 1990 via Schröder 2001"),
}


@dataclass
class SynthConfig:
    """Size and make-up of the synthetic corpus (``rrpo synth --help-config``)."""

    languages: list[str] = option(["zh", "en"], "languages to synthesise (zh Mandarin, en English)")
    sentences: Literal["builtin", "generated"] = option(
        "builtin",
        "builtin: the written lists (at most 32 per language); generated: distinct sentences from a "
        "seeded grammar (thousands per language)",
    )
    sentences_per_language: int = option(12, "sentences per language (builtin: at most 32)")
    renditions: int = option(
        0,
        "0: every sentence by every speaker in every emotion (parallel); N: each sentence "
        "N times, in N different emotions (rotating), each by a seeded choice of speaker",
    )
    voices_per_language: int = option(4, "voices per language: the first N of `voices`")
    pitch_bases: list[float] = option(
        [1.0],
        "habitual-pitch factors; every voice speaks at each, as its own "
        "speaker (e.g. [0.85, 1.0, 1.2] triples the speakers)",
    )
    voices: dict[str, list[str]] = option(
        {"zh": ["m1", "f2", "m4", "f3", "m3", "f5"], "en": ["m3", "f1", "m2", "f4", "m1", "f2"]},
        "espeak-ng voice variants per language, in order of use",
    )
    emotions: list[str] = option(list(ESD_CLASSES), "emotions to render (a subset of the five ESD emotions)")
    sample_rate: int = option(16000, "output sampling rate in Hz")
    seed: int = option(0, "seed for the split and the per-speaker and per-utterance jitter")
    splits: dict[str, float] = option(
        {"train": 0.7, "evaluation": 0.15, "test": 0.15},
        "split fractions, by sentence (a test sentence is unseen in train); names as ESD's",
    )
    intensity: float = option(1.0, "scales every emotion's deviation from neutral (0 = all neutral)")
    jitter: float = option(1.0, "scales the seeded per-speaker and per-utterance prosody jitter (0 = none)")

    def __post_init__(self):
        check(len(self.languages) > 0, "languages", "give at least one language")
        for lang in self.languages:
            check(lang in LANGUAGE_VOICES, "languages", f"'{lang}' is not one of {sorted(LANGUAGE_VOICES)}")
        check(len(set(self.languages)) == len(self.languages), "languages", "a language repeats")
        check(self.sentences in ("builtin", "generated"), "sentences", "must be builtin or generated")
        if self.sentences == "builtin":
            n_max, what = min(len(SENTENCES[lang]) for lang in self.languages), "the built-in sentence lists"
        else:
            n_max, what = min(grammar_size(lang) // 2 for lang in self.languages), "the sentence grammar"
        check(
            1 <= self.sentences_per_language <= n_max,
            "sentences_per_language",
            f"must be in [1, {n_max}] ({what}), got {self.sentences_per_language}",
        )
        check(
            0 <= self.renditions <= len(self.emotions),
            "renditions",
            f"must be in [0, {len(self.emotions)}] (one per emotion at most), got {self.renditions}",
        )
        check(len(self.pitch_bases) >= 1, "pitch_bases", "give at least one factor (1.0 = the voice's own pitch)")
        check(len(set(self.pitch_bases)) == len(self.pitch_bases), "pitch_bases", "a factor repeats")
        for b in self.pitch_bases:
            check(0.7 <= b <= 1.4, "pitch_bases", f"{b} is outside [0.7, 1.4] (what espeak-ng renders cleanly)")
        check(self.voices_per_language >= 1, "voices_per_language", "must be at least 1")
        for lang in self.languages:
            vs = self.voices.get(lang)
            check(vs is not None, "voices", f"no voice list for language '{lang}'")
            check(
                len(vs) >= self.voices_per_language,
                "voices",
                f"language '{lang}' lists {len(vs)} voices, fewer than voices_per_language={self.voices_per_language}",
            )
            check(len(set(vs)) == len(vs), "voices", f"a voice repeats for '{lang}'")
            for v in vs:
                check(v.replace("_", "").isalnum(), "voices", f"'{v}' is not a voice variant name such as 'm3'")
        check(len(self.emotions) > 0, "emotions", "give at least one emotion")
        for e in self.emotions:
            check(e in RULES, "emotions", f"'{e}' has no prosody rule (known: {', '.join(RULES)})")
        check(len(set(self.emotions)) == len(self.emotions), "emotions", "an emotion repeats")
        check(8000 <= self.sample_rate <= 48000, "sample_rate", "must be within 8000-48000 Hz")
        check(len(self.splits) > 0, "splits", "give at least one split")
        for name, frac in self.splits.items():
            check(isinstance(name, str) and name.strip() != "", "splits", "split names must be non-empty")
            check(frac >= 0, f"splits.{name}", "fractions must be non-negative")
        check(
            abs(sum(self.splits.values()) - 1.0) < 1e-6,
            "splits",
            f"fractions must sum to 1, got {sum(self.splits.values())}",
        )
        check(0.0 <= self.intensity <= 1.5, "intensity", "must be within [0, 1.5]")
        check(0.0 <= self.jitter <= 3.0, "jitter", "must be within [0, 3]")


# ---------------------------------------------------------------------------------------------
# seeded randomness: every draw depends on (seed, a name), never on the order of synthesis


def _rng(seed: int, *names: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join([str(seed), *names]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _clipped_normal(rng: np.random.Generator, sd: float) -> float:
    return float(np.clip(rng.normal(0.0, 1.0), -2.0, 2.0) * sd)


def assign_splits(n: int, splits: dict[str, float], seed: int, language: str) -> list[str]:
    """Split name of each of ``n`` sentences: a seeded permutation cut by the fractions.

    Every split with a positive fraction gets at least one sentence when ``n`` allows; the
    largest split absorbs rounding.
    """
    names = list(splits)
    counts = {k: int(round(splits[k] * n)) for k in names}
    positive = [k for k in names if splits[k] > 0]
    if n >= len(positive):
        for k in positive:
            counts[k] = max(counts[k], 1)
    biggest = max(names, key=lambda k: (splits[k], -names.index(k)))
    counts[biggest] += n - sum(counts.values())
    while counts[biggest] < 0:  # more forced ones than sentences: take from the others
        k = max((k for k in names if k != biggest), key=lambda k: counts[k])
        counts[k] -= 1
        counts[biggest] += 1
    order = _rng(seed, "split", language).permutation(n)
    out = [""] * n
    pos = 0
    for k in names:
        for i in order[pos : pos + counts[k]]:
            out[int(i)] = k
        pos += counts[k]
    return out


@dataclass(frozen=True)
class Job:
    """One utterance to synthesise."""

    id: str
    language: str
    speaker: str
    voice: str
    emotion: str
    sentence: int
    text: str
    split: str
    pitch_base: float = 1.0

    @property
    def rel_path(self) -> str:
        return f"audio/{self.language}/{self.speaker}/{self.emotion}/{self.id}.wav"


def sentence_texts(cfg: SynthConfig, language: str) -> list[str]:
    """The corpus' sentences of ``language``: the built-in list's first N, or N generated ones."""
    if cfg.sentences == "generated":
        return generate_sentences(language, cfg.sentences_per_language, cfg.seed)
    return list(SENTENCES[language][: cfg.sentences_per_language])


def speakers_of(cfg: SynthConfig, language: str) -> list[tuple[str, str, float]]:
    """(speaker name, espeak variant, pitch base) of every speaker of ``language``: each voice at each
    pitch base; the name carries the base when it is not 1 (``zh-m1``, ``zh-m1-p120``)."""
    out = []
    for variant in cfg.voices[language][: cfg.voices_per_language]:
        for b in cfg.pitch_bases:
            name = f"{language}-{variant}" if b == 1.0 else f"{language}-{variant}-p{int(round(b * 100))}"
            out.append((name, variant, float(b)))
    return out


def plan(cfg: SynthConfig) -> list[Job]:
    """Every utterance of the corpus, in a fixed order (language, speaker, emotion, sentence).

    Parallel (``renditions=0``): every sentence by every speaker in every emotion. Otherwise sentence
    ``s`` is spoken in the emotions ``emotions[(s + j) % E]``, ``j < renditions`` (so every emotion gets
    the same share of sentences), each by a speaker drawn from ``(seed, language, s, j)``."""
    jobs = []
    width = max(3, len(str(cfg.sentences_per_language - 1)))
    for lang in cfg.languages:
        texts = sentence_texts(cfg, lang)
        splits = assign_splits(cfg.sentences_per_language, cfg.splits, cfg.seed, lang)
        speakers = speakers_of(cfg, lang)
        if cfg.renditions:
            chosen = {}
            for s in range(len(texts)):
                for j in range(cfg.renditions):
                    k = int(_rng(cfg.seed, "rendition", lang, str(s), str(j)).integers(len(speakers)))
                    chosen[(speakers[k][0], cfg.emotions[(s + j) % len(cfg.emotions)], s)] = True
        for speaker, variant, base in speakers:
            for emo in cfg.emotions:
                for s in range(len(texts)):
                    if cfg.renditions and (speaker, emo, s) not in chosen:
                        continue
                    jobs.append(
                        Job(
                            id=f"{speaker}_{emo}_s{s:0{width}d}",
                            language=lang,
                            speaker=speaker,
                            voice=f"{LANGUAGE_VOICES[lang]}+{variant}",
                            emotion=emo,
                            sentence=s,
                            text=texts[s],
                            split=splits[s],
                            pitch_base=base,
                        )
                    )
    return jobs


def prosody_for(cfg: SynthConfig, job: Job) -> dict:
    """The prosody targets of one utterance: rule ** intensity, times speaker and utterance jitter.

    Returns factors relative to the voice's neutral settings (``f0``, ``f0_range``, ``rate``), the
    target level ``level_db`` (dBFS) and the espeak settings that realise them.
    """
    from rrpo.data import espeak

    rule = RULES[job.emotion]
    k, j = cfg.intensity, cfg.jitter
    spk = _rng(cfg.seed, "speaker", job.speaker)
    utt = _rng(cfg.seed, "utterance", job.id)
    # per speaker: habitual pitch, rate and recording level differ a little
    spk_f0 = math.exp(_clipped_normal(spk, 0.04 * j))
    spk_rate = math.exp(_clipped_normal(spk, 0.05 * j))
    spk_db = _clipped_normal(spk, 1.5 * j)
    # per utterance: no two renditions of an emotion are the same
    f0 = rule.f0**k * spk_f0 * job.pitch_base * math.exp(_clipped_normal(utt, 0.03 * j))
    f0_range = rule.f0_range**k * math.exp(_clipped_normal(utt, 0.08 * j))
    rate = rule.rate**k * spk_rate * math.exp(_clipped_normal(utt, 0.04 * j))
    level_db = BASE_LEVEL_DB + rule.loudness_db * k + spk_db + _clipped_normal(utt, 1.0 * j)
    wpm = int(round(min(450, max(80, BASE_RATE[job.language] * rate))))
    settings = espeak.Prosody(rate=wpm, pitch=espeak.pitch_value(f0), range=espeak.range_value(f0_range))
    return {
        "f0": round(f0, 4),
        "f0_range": round(f0_range, 4),
        "rate": round(rate, 4),
        "level_db": round(level_db, 2),
        "espeak": dataclasses.asdict(settings),
    }


def spoken_text(text: str, terminal: str) -> str:
    """The text given to espeak: ``text`` with its final punctuation replaced by ``terminal``."""
    if not terminal:
        return text
    return text.rstrip().rstrip("。.!！?？") + terminal


def active_level_db(audio: np.ndarray, sr: int, frame_s: float = 0.02, floor_db: float = 40.0) -> float:
    """RMS level in dBFS over the frames within ``floor_db`` of the loudest frame (pauses excluded)."""
    n = max(1, int(sr * frame_s))
    t = len(audio) // n
    if t == 0:
        return -math.inf
    frames = np.asarray(audio[: t * n], dtype=np.float64).reshape(t, n)  # (T, n)
    ms = np.mean(frames**2, axis=1)  # (T,)
    if ms.max() <= 0:
        return -math.inf
    active = ms >= ms.max() * 10 ** (-floor_db / 10)
    return 10 * math.log10(float(ms[active].mean()))


def render(cfg: SynthConfig, job: Job) -> tuple[np.ndarray, dict]:
    """Synthesise one utterance: float32 audio ``(T,)`` at ``cfg.sample_rate`` and its prosody record."""
    from rrpo.data import espeak
    from rrpo.data.audio import resample

    pros = prosody_for(cfg, job)
    text = spoken_text(job.text, RULES[job.emotion].terminal)
    seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}\x1f{job.id}".encode()).digest()[:4], "little")
    pcm, rate = espeak.synthesize(text, job.voice, espeak.Prosody(**pros["espeak"]), seed=seed)
    if pcm.size == 0 or not np.any(pcm):
        raise RrpoError(f"espeak-ng produced no audio for {job.id} (voice {job.voice})")
    audio = resample(pcm.astype(np.float32) / 32768.0, rate, cfg.sample_rate)  # (T,)
    # loudness: espeak's own amplitude varies with voice and pitch, so set the level explicitly
    gain_db = pros["level_db"] - active_level_db(audio, cfg.sample_rate)
    audio = audio * np.float32(10 ** (gain_db / 20))
    peak = float(np.abs(audio).max())
    if peak > 0.98:  # never clip: lower the whole utterance instead (recorded in the manifest)
        audio = audio * np.float32(0.98 / peak)
        gain_db += 20 * math.log10(0.98 / peak)
        pros["limited"] = True
    pros["gain_db"] = round(gain_db, 2)
    return audio.astype(np.float32), pros


def _meta(cfg: SynthConfig) -> dict:
    from rrpo.data import espeak

    try:
        from importlib.metadata import version as pkg_version

        loader = pkg_version("espeakng-loader")
    except Exception:  # pragma: no cover
        loader = None
    return {
        "synthetic": True,
        "corpus": "rrpo-synth",
        "description": "Synthetic emotional speech made by espeak-ng with rule-based emotional prosody; "
        "not recordings of people.",
        "engine": "espeak-ng",
        "engine_version": espeak.version(),
        "espeakng_loader_version": loader,
        "config": _config_record(cfg),
        "rules": {e: dataclasses.asdict(r) for e, r in RULES.items()},
        "base_rate_wpm": BASE_RATE,
        "base_level_db": BASE_LEVEL_DB,
    }


#: Keys added after the first corpora were made, at their defaults: left out of meta.json when at the
#: default, so a folder made before them is still recognised as made with the same settings.
_LATER_KEYS = {"sentences": "builtin", "renditions": 0, "pitch_bases": [1.0]}


def _config_record(cfg: SynthConfig) -> dict:
    d = to_dict(cfg)
    return {k: v for k, v in d.items() if not (k in _LATER_KEYS and v == _LATER_KEYS[k])}


def _check_existing_meta(path: Path, meta: dict) -> None:
    """Refuse to add to a folder made with another config (it would mix two corpora)."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise RrpoError(
            "exists but is not a readable synth meta.json; remove it or choose another out=", path
        ) from None
    if old == meta:
        return
    diffs = [k for k in sorted(set(old) | set(meta)) if old.get(k) != meta.get(k)]
    if "config" in diffs and isinstance(old.get("config"), dict):
        diffs = [
            f"config.{k}"
            for k in sorted(set(old["config"]) | set(meta["config"]))
            if old["config"].get(k) != meta["config"].get(k)
        ] + [d for d in diffs if d != "config"]
    raise RrpoError(
        f"this folder holds a corpus made with different settings ({', '.join(diffs)}); "
        f"choose another out= or remove the folder",
        path,
    )


def synthesize(cfg: SynthConfig, out_dir: str | Path) -> Manifest:
    """Write the corpus into ``out_dir`` and return its manifest (``out_dir/manifest.jsonl``).

    Idempotent: existing WAVs (written atomically, so complete) are kept and not re-synthesised;
    the manifest and meta.json are rewritten with the same bytes.
    """
    import soundfile as sf
    from tqdm import tqdm

    from rrpo.data.audio import save_audio

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RrpoError("output exists and is not a folder", out_dir)
    meta = _meta(cfg)
    meta_path = out_dir / "meta.json"
    _check_existing_meta(meta_path, meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(meta_path, meta)

    jobs = plan(cfg)
    records = []
    made = 0
    for job in tqdm(jobs, desc="synthesising", unit="utt", dynamic_ncols=True, disable=None):  # bar on a terminal
        path = out_dir / job.rel_path
        if path.exists() and path.stat().st_size > 44:
            try:
                info = sf.info(str(path))
                n_frames, rate = info.frames, info.samplerate
            except Exception:
                n_frames, rate = 0, 0
            if n_frames > 0 and rate == cfg.sample_rate:
                # the gain (and limiting) depend on the audio: read them back from the old record
                duration = n_frames / rate
                records.append((job, duration, None))
                continue
        audio, pros = render(cfg, job)
        save_audio(path, audio, cfg.sample_rate)
        made += 1
        records.append((job, len(audio) / cfg.sample_rate, pros))

    # prosody records of skipped files come from the previous manifest (same config, same values)
    previous = {}
    man_path = out_dir / "manifest.jsonl"
    if any(p is None for _, _, p in records) and man_path.exists():
        from rrpo.data.manifest import read_manifest

        try:
            previous = {u.id: u.extra.get("prosody") for u in read_manifest(man_path)}
        except RrpoError:
            previous = {}
    utts = []
    for job, duration, pros in records:
        if pros is None:
            pros = previous.get(job.id)
            if pros is None:  # no manifest to read from: re-render to recover the record exactly
                audio, pros = render(cfg, job)
        utts.append(
            Utterance(
                id=job.id,
                audio=job.rel_path,
                sampling_rate=cfg.sample_rate,
                duration=round(duration, 6),
                text=job.text,
                speaker=job.speaker,
                language=job.language,
                emotion=job.emotion,
                split=job.split,
                extra={
                    "synthetic": True,
                    "engine": "espeak-ng",
                    "engine_version": meta["engine_version"],
                    "voice": job.voice,
                    "sentence": job.sentence,
                    "syllables": count_syllables(job.text, job.language),
                    "rule": RULES[job.emotion].source,
                    "prosody": pros,
                    **({"pitch_base": job.pitch_base} if job.pitch_base != 1.0 else {}),
                },
            )
        )
    man = write_manifest(man_path, utts)
    log.info(
        "synthetic corpus: %d utterances (%d synthesised, %d kept) in %s", len(utts), made, len(utts) - made, out_dir
    )
    return man
