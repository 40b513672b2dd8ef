"""The starting policy's pre-training: many text-speech pairs (a generated synthetic corpus and real
speech), cached outside the run folder under ``cache`` and reused by any run with the same settings
and inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rrpo.args import yaml_list
from rrpo.errors import RrpoError
from rrpo.experiment.config import ExperimentConfig


def pretrain_key(cfg: ExperimentConfig, codec: Path, manifests: dict[str, Path]) -> tuple[str, dict]:
    """(hex key, what it hashes) of the policy's pre-training: its settings, the synthetic corpus'
    settings, the codec's files and the bytes of the real corpora's manifests (their audio paths
    included), and rrpo's version. The same key means the same pre-trained policy (training is
    deterministic), so a run with the same settings and data reuses it."""
    import hashlib

    from rrpo import __version__
    from rrpo.io import DESCRIPTIVE_FILES, sha256_files

    codec_files = sorted(p for p in codec.rglob("*") if p.is_file() and p.name not in DESCRIPTIVE_FILES)

    what = {
        "rrpo": __version__,
        "corpora": list(cfg.policy_pretrain_corpora),
        "policy_pretrain": list(cfg.policy_pretrain),
        "policy_synth": list(cfg.policy_synth) if "synth" in cfg.policy_pretrain_corpora else None,
        "codec": sha256_files(codec_files),
        "manifests": {k: sha256_files([m]) for k, m in sorted(manifests.items())},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20], what


def policy_pretrain(cfg: ExperimentConfig, o: Path, tok: dict[str, Path], run_verb) -> None:
    """Pre-train the starting policy on many text-speech pairs (cached under `cache`, reused across runs)."""
    import os

    from rrpo.io import read_json, write_json

    d = o / "data"
    real = {
        c: d / ("casia.jsonl" if c == "casia" else f"{c}.jsonl") for c in cfg.policy_pretrain_corpora if c != "synth"
    }
    key, what = pretrain_key(cfg, o / "codec", real)
    root = (Path(cfg.cache).resolve() / "policy_pretrain" / key) if cfg.cache else o / "policy_pretrain" / "cached"
    reused = (root / ".done").exists()
    t0 = time.perf_counter()
    if not reused:
        root.mkdir(parents=True, exist_ok=True)
        mans, toks = [], []
        if "synth" in cfg.policy_pretrain_corpora:
            for args in (
                ["synth", f"out={root / 'synth'}", *cfg.policy_synth],
                [
                    "tokenize",
                    f"codec={o / 'codec'}",
                    f"manifest={root / 'synth' / 'manifest.jsonl'}",
                    f"out={root / 'tokens_synth'}",
                ],
            ):
                if run_verb(args) != 0:
                    raise RrpoError(f"policy pre-training: `rrpo {args[0]}` failed", root)
            mans.append(root / "synth" / "manifest.jsonl")
            toks.append(root / "tokens_synth")
        for c, m in real.items():
            mans.append(m)
            toks.append(tok[c])
        # CASIA's held-out sentences (split test) stay out of training, like the synthetic test split
        args = [
            "policy",
            "sft",
            f"out={root / 'run'}",
            f"data.manifests={yaml_list(mans)}",
            f"data.tokens={yaml_list(toks)}",
            "data.heldout_by=split",
            "data.heldout=[test]",
            *cfg.policy_pretrain,
        ]
        if run_verb(args) != 0:
            raise RrpoError("policy pre-training failed; run the same command again to resume it", root)
        write_json(
            root / "pretrain.json",
            {"key": key, "hashed": what, "command": args, "seconds": round(time.perf_counter() - t0, 1)},
        )
        (root / ".done").write_text("ok\n")
    made = read_json(root / "pretrain.json")
    here = o / "policy_pretrain"
    here.mkdir(parents=True, exist_ok=True)
    link = here / "run"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(root / "run", link, target_is_directory=True)
    write_json(
        here / "pretrain.json",
        {
            "key": key,
            "cache": str(root),
            "reused": reused,
            "seconds_to_make": made["seconds"],
            "seconds_this_run": round(time.perf_counter() - t0, 1),
            "corpora": list(cfg.policy_pretrain_corpora),
            "command": made["command"],
            "hashed": what,
        },
    )
