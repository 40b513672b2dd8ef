"""The experiment's phone stages: transcribed speech in, the content encoder of the codec's phonetic
tokens and the audit's phone judge out.

- ``transcribed``: each corpus of ``transcribed`` ({preparer: root}, e.g. LibriSpeech, AN4, AISHELL
  in their own layouts) is prepared into ``data/transcribed/<name>.jsonl``.
- ``phones_content`` (``content: phonetic``): ``rrpo phones train`` on those manifests, the
  built-in synthetic corpus and the CASIA recordings of the speakers no fold holds out (their
  transcripts); the codec clusters its states.
- ``phones_judge`` (unless ``phone_judge`` names a folder): ``rrpo phones train`` on the real
  transcribed corpora only, with weights of its own; every audit scores PER with it.

Both models are cached under ``cache`` (``phones/<key>``), keyed by their settings, the bytes of
their manifests and rrpo's version, so another experiment with the same inputs reuses them; the
run folder links ``phones/content`` and ``phones/judge`` to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from rrpo.args import yaml_list
from rrpo.errors import RrpoError

#: where users download the transcribed corpora the experiment's phone models learn from
SOURCES = {
    "librispeech": "https://www.openslr.org/12 (e.g. train-clean-100, or test-clean for a first try)",
    "an4": "http://www.speech.cs.cmu.edu/databases/an4/ (an4_sphere.tar.gz)",
    "aishell": "https://www.openslr.org/33 (data_aishell)",
}


def check_transcribed(cfg) -> None:
    """One line naming what is missing when the phone stages cannot run."""
    from rrpo.data.corpora import PREPARERS

    if cfg.content == "phonetic" and not cfg.transcribed:
        raise RrpoError(
            "content=phonetic needs transcribed speech to train its phone model: give "
            "'transcribed={librispeech: DIR, an4: DIR, aishell: DIR}' (any of them; README, 'Transcribed "
            "corpora', says where to download each), or set content=spectral"
        )
    for name, root in cfg.transcribed.items():
        if name not in PREPARERS:
            raise RrpoError(f"transcribed.{name}: no such corpus preparer (known: {', '.join(sorted(PREPARERS))})")
        if not Path(root).exists():
            where = f"; download it from {SOURCES[name]}" if name in SOURCES else ""
            raise RrpoError(f"transcribed.{name}: corpus root not found{where}", root)


def transcribed_manifests(o: Path, cfg) -> list[Path]:
    return [o / "data" / "transcribed" / f"{name}.jsonl" for name in sorted(cfg.transcribed)]


def codec_transcribed_manifests(o: Path, cfg) -> list[Path]:
    """The draws of ``codec_transcribed_hours`` of each transcribed corpus the codec also trains on."""
    if not cfg.transcribed or cfg.codec_transcribed_hours <= 0:
        return []
    return [o / "data" / "transcribed" / f"{name}_codec.jsonl" for name in sorted(cfg.transcribed)]


def draw_hours(records: list, hours: float, seed: int = 0) -> list:
    """At most ``hours`` of ``records`` (each with a ``duration`` in seconds), in their own order.

    The records are visited in a random order drawn from ``seed``; each is kept while the total stays
    within ``hours`` and skipped otherwise, so every record left out would overflow the total kept.
    """
    import numpy as np

    budget, total, keep = 3600.0 * hours, 0.0, []
    for i in np.random.default_rng(seed).permutation(len(records)):
        d = float(records[i].duration or 0.0)
        if total + d <= budget:
            total += d
            keep.append(int(i))
    return [records[i] for i in sorted(keep)]


def prepare_transcribed(o: Path, cfg) -> None:
    from rrpo.data.corpora import prepare_corpus
    from rrpo.data.manifest import read_manifest, write_manifest

    out = o / "data" / "transcribed"
    out.mkdir(parents=True, exist_ok=True)
    for name, man in zip(sorted(cfg.transcribed), transcribed_manifests(o, cfg)):
        prepare_corpus(name, Path(cfg.transcribed[name]), man)
    for name, man in zip(sorted(cfg.transcribed), codec_transcribed_manifests(o, cfg)):
        write_manifest(man, draw_hours(list(read_manifest(out / f"{name}.jsonl")), cfg.codec_transcribed_hours))


def cached_phones(cfg, o: Path, name: str, manifests: list[Path], overrides: list[str], run_verb) -> None:
    """Train (or reuse from ``cache``) one phone model on ``manifests``; link it as ``phones/<name>``."""
    from rrpo import __version__
    from rrpo.io import read_json, sha256_files, write_json

    what = {
        "rrpo": __version__,
        "model": name,
        "overrides": list(overrides),
        "manifests": [sha256_files([m]) for m in manifests],
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]
    root = (Path(cfg.cache).resolve() / "phones" / key) if cfg.cache else o / "phones" / f"{name}_run"
    reused = (root / ".done").exists()
    t0 = time.perf_counter()
    if not reused:
        args = ["phones", "train", f"out={root}", f"manifests={yaml_list(manifests)}", *overrides]
        if run_verb(args) != 0:
            raise RrpoError(f"the {name} phone model failed to train; run the same command again to resume it", root)
        write_json(root / "made.json", {"key": key, "hashed": what, "seconds": round(time.perf_counter() - t0, 1)})
        (root / ".done").write_text("ok\n")
    here = o / "phones"
    here.mkdir(parents=True, exist_ok=True)
    link = here / name
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(root, link, target_is_directory=True)
    made = read_json(root / "made.json")
    write_json(
        here / f"{name}.json",
        {"key": key, "cache": str(root), "reused": reused, "seconds_to_make": made["seconds"], "hashed": what},
    )


def phone_stages(cfg, o: Path, synth: Path, casia_codec: Path, run_verb) -> tuple[list, list[str], Path | None]:
    """(stages, the codec's extra keys, the audits' phone judge folder or None); the codec's extra
    training manifests are ``codec_transcribed_manifests``."""
    from rrpo.stages import Stage

    check_transcribed(cfg)
    judge = Path(cfg.phone_judge).resolve() if cfg.phone_judge else None
    if judge is not None and not (judge / "phones.json").is_file():
        raise RrpoError("phone_judge: not a phone model folder (no phones.json; `rrpo phones train`)", judge)
    if not cfg.transcribed:
        return [], [], judge
    asr = transcribed_manifests(o, cfg)
    stages = [Stage("transcribed", o / "data" / "transcribed", lambda: prepare_transcribed(o, cfg))]
    codec_keys: list[str] = []
    if cfg.content == "phonetic":
        stages.append(
            Stage(
                "phones_content",
                o / "phones" / "stages" / "content",
                lambda: cached_phones(cfg, o, "content", [*asr, synth, casia_codec], cfg.phones_content, run_verb),
            )
        )
        codec_keys = ["content=phonetic", f"content_model={o / 'phones' / 'content'}"]
    if judge is None:
        stages.append(
            Stage(
                "phones_judge",
                o / "phones" / "stages" / "judge",
                lambda: cached_phones(cfg, o, "judge", asr, cfg.phones_judge, run_verb),
            )
        )
        judge = o / "phones" / "judge"
    return stages, codec_keys, judge
