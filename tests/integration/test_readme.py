"""README's verb chain runs as written (plus small settings) from install to a report, on the shared
corpora: every line reads only what earlier lines wrote. The lines are taken from README.md itself,
so the test fails as soon as README and the command line drift apart."""

import re
import shlex

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

#: small settings appended to each line, by verb (the README's own defaults take hours on a CPU)
SMALL = {
    ("synth",): ["sentences_per_language=2", "voices_per_language=2"],
    ("codec", "train"): [
        "spectral_clusters=16",
        "pitch_bins=4",
        "energy_bins=2",
        "kmeans_iters=5",
        "max_train_frames=4000",
    ],
    ("rm", "train"): [
        "train.steps=2",
        "train.batch_size=8",
        "model.d_model=32",
        "model.n_layers=1",
        "model.d_ff=64",
        "train.progress=false",
        "train.bf16=false",
    ],
    ("rm", "eval"): ["robustness=false"],
    ("phones", "train"): [
        "channels=16",
        "blocks=1",
        "batch_seconds=10",
        "train.steps=2",
        "train.warmup_steps=0",
        "train.progress=false",
    ],
    ("policy", "sft"): [
        "model.hidden_size=32",
        "model.layers=1",
        "model.heads=2",
        "model.kv_heads=1",
        "model.intermediate_size=64",
        "train.steps=2",
        "train.batch_size=8",
        "train.eval_every=0",
        "train.ckpt_every=0",
        "train.warmup_steps=0",
        "train.progress=false",
        "train.bf16=false",
    ],
    ("judge", "train"): ["c_grid=[0.1]"],
    ("optimize",): [
        "train.steps=2",
        "train.batch_size=2",
        "train.ckpt_every=1",
        "sampling.max_ratio=4",
        "train.progress=false",
        "train.bf16=false",
    ],
    ("audit",): ["prompts.max_texts=1", "sampling.max_ratio=4", "recognizer=false"],
}


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block after <!-- {marker} -->"
    return m.group(1)


def chain_lines() -> list[list[str]]:
    lines = [ln.strip() for ln in readme_block("readme-chain").splitlines() if ln.strip()]
    assert lines[0] == "source .venv/bin/activate"
    out = [shlex.split(ln) for ln in lines[1:]]
    assert all(a[0] == "rrpo" for a in out), "every chain line after the first is an rrpo command"
    return [a[1:] for a in out]


def test_chain_covers_every_verb():
    verbs = {tuple(a[:2]) if a[0] in ("codec", "rm", "policy", "judge", "phones") else (a[0],) for a in chain_lines()}
    assert verbs >= {
        ("prepare",),
        ("synth",),
        ("phones", "train"),
        ("codec", "train"),
        ("tokenize",),
        ("rm", "train"),
        ("rm", "eval"),
        ("policy", "sft"),
        ("judge", "train"),
        ("optimize",),
        ("audit",),
        ("report",),
    }


def cli_verbs() -> list[str]:
    """Every ``rrpo VERB`` and ``rrpo VERB ACTION`` the command line knows, read off its parser."""
    import argparse

    from rrpo.cli import build_parser

    def subs(p):
        return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)

    out = []
    for verb, vp in subs(build_parser()).choices.items():
        actions = subs(vp)
        out += [f"{verb} {a}" for a in actions.choices] if actions else [verb]
    return out


def test_readme_names_every_verb():
    """A verb (or action) added to the command line and missing from README fails here; the chain
    above runs the pipeline's verbs, README's list of verbs names the rest."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    verbs = cli_verbs()
    assert {"experiment", "demo", "judge eval", "policy generate", "codec encode", "codec decode"} <= set(verbs)
    missing = [v for v in verbs if f"rrpo {v}" not in text]
    assert not missing, f"README never names: {', '.join('rrpo ' + v for v in missing)}"


def test_readme_chain_runs_as_written(shared_data, tmp_path, monkeypatch):
    from rrpo.cli import main

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    repo = tmp_path / "repo"  # a repository root with the data at ../shared/data, as README says
    repo.mkdir()
    (repo / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(repo)
    for args in chain_lines():
        key = tuple(args[:2]) if tuple(args[:2]) in SMALL else (args[0],)
        argv = args + SMALL.get(key, [])
        assert main(argv) == 0, "README line failed: rrpo " + " ".join(args)
    assert (repo / "runs" / "report" / "index.html").exists()
    for run in ("diffro", "rrpo"):
        assert (repo / "runs" / run / "audit" / "audit.json").exists()
