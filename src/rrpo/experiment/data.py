"""The experiment's data stage: CASIA, ESD and the multilingual corpora prepared, CASIA's held-out
sentences marked as split ``test``, the codec's manifest without the held-out speakers."""

from __future__ import annotations

from pathlib import Path

from rrpo.errors import RrpoError
from rrpo.experiment.config import ExperimentConfig


def extra_corpora(cfg: ExperimentConfig, tokenised: bool = False) -> list[str]:
    """Corpora of ``data`` besides CASIA and ESD: the reward models' and the policy's pre-training sets
    (``tokenised``: only these, which need codec tokens) and the judge's extra corpora."""
    out = []
    for c in [*cfg.rm_pretrain_corpora, *cfg.policy_pretrain_corpora, *([] if tokenised else cfg.judge_corpora)]:
        if c not in ("synth", "casia", "esd") and c not in out:
            out.append(c)
    return out


def prepare_data(data: Path, out: Path, cfg: ExperimentConfig) -> None:
    """Prepare CASIA, ESD and the pre-training corpora, mark CASIA's held-out sentences as split 'test',
    write the codec's manifest."""
    from rrpo.data.corpora import prepare_corpus
    from rrpo.data.manifest import read_manifest, write_manifest

    for corpus in ("casia", "esd", *extra_corpora(cfg)):
        if not (data / corpus).is_dir():
            raise RrpoError(f"no {corpus}/ folder here (expected the shared corpora, e.g. ../shared/data)", data)
    out.mkdir(parents=True, exist_ok=True)
    for corpus in ("casia", "esd"):
        prepare_corpus(corpus, data / corpus, out / f"{corpus}_raw.jsonl")
    for corpus in extra_corpora(cfg):
        prepare_corpus(corpus, data / corpus, out / f"{corpus}.jsonl")
    raw = read_manifest(out / "casia_raw.jsonl")
    speakers = sorted({u.speaker for u in raw})
    for h in cfg.heldout_speakers:
        if h not in speakers:
            raise RrpoError(
                f"held-out speaker '{h}' is not in CASIA (speakers: {', '.join(speakers)})", out / "casia_raw.jsonl"
            )
    if not set(speakers) - set(cfg.heldout_speakers):
        raise RrpoError(
            "every CASIA speaker is held out: the codec and the reward models need at least one other",
            out / "casia_raw.jsonl",
        )
    sentences = {u.extra.get("sentence") for u in raw}
    missing = sorted(set(cfg.heldout_sentences) - sentences)
    if missing:
        raise RrpoError(f"held-out sentence id(s) {missing} are not in CASIA", out / "casia_raw.jsonl")
    held = set(cfg.heldout_sentences)
    recs = []
    for u in raw:
        u.audio = str(raw.audio_path(u).resolve())
        u.split = "test" if u.extra.get("sentence") in held else "train"
        recs.append(u)
    write_manifest(out / "casia.jsonl", recs)
    write_manifest(out / "casia_codec.jsonl", [u for u in recs if u.speaker not in cfg.heldout_speakers])
    esd = read_manifest(out / "esd_raw.jsonl")
    for u in esd:
        u.audio = str(esd.audio_path(u).resolve())
    write_manifest(out / "esd.jsonl", esd)
