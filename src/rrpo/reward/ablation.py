"""``rrpo rm ablation``: the regulariser ablation (the paper's Table 2) on our data, from one config.

For every held-out CASIA speaker, variant and seed: fine-tune the reward model on the other CASIA
speakers (from the pre-trained checkpoint, or from scratch when no pre-training corpus is given),
then evaluate on the held-out speaker (in-language) and on ESD English (cross-lingual). Variants
are config overrides of the fine-tuning config (``variants: {name: [key=value, ...]}``). Settings
are tuned on CASIA only; ESD is only ever evaluated.

Outputs under ``out``: ``pretrain/`` (run), ``runs/<heldout>/<variant>/seed<k>/`` (run +
``eval.json``), ``results.json`` (every evaluation), ``table.md`` (mean ± std over seeds and held-out
speakers) and ``plot.png``. Finished runs are skipped, so an interrupted ablation resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from rrpo.config import option, section
from rrpo.data.emotions import ESD_CLASSES
from rrpo.errors import ConfigError, RrpoError
from rrpo.io import atomic_open, write_json
from rrpo.reward.data import DataConfig
from rrpo.reward.evaluate import EvalConfig
from rrpo.reward.train import RMTrainConfig

log = logging.getLogger(__name__)

DEFAULT_VARIANTS = {
    "vanilla": [],
    "+LS": ["reg.label_smoothing=0.1"],
    "+LS+EAM": ["reg.label_smoothing=0.1", "reg.eam.enabled=true"],
    "+LS+EAM+FGM": ["reg.label_smoothing=0.1", "reg.eam.enabled=true", "reg.fgm.enabled=true"],
}


@dataclass
class AblationConfig:
    classes: list[str] = option(list(ESD_CLASSES), "emotion classes of every reward model")
    casia_manifest: str = option("", "CASIA manifest (fine-tuning and in-language test)")
    casia_tokens: str = option("", "CASIA token shards")
    esd_manifest: str = option("", "ESD English manifest (cross-lingual test only)")
    esd_tokens: str = option("", "ESD token shards")
    pretrain_manifest: str = option("", "pre-training manifest (synthetic corpus); '' = fine-tune from scratch")
    pretrain_tokens: str = option("", "pre-training token shards")
    pretrain_languages: list[str] = option(["zh"], "languages of the pre-training manifest to use")
    codec: str = option("", "codec folder, used with data= to tokenize the corpora")
    synth_sentences: int = option(32, "with data=: sentences of the synthetic Mandarin pre-training corpus")
    synth_voices: int = option(4, "with data=: voices of the synthetic Mandarin pre-training corpus")
    heldout_speakers: list[str] = option([], "CASIA speakers to hold out in turn ([] = the last one alone)")
    seeds: list[int] = option([0, 1, 2], "fine-tuning seeds")
    variants: dict[str, list[str]] = option(DEFAULT_VARIANTS, "variant name -> fine-tuning config overrides")
    pretrain: RMTrainConfig = section(RMTrainConfig, "pre-training config (its data section is filled in)")
    finetune: RMTrainConfig = section(RMTrainConfig, "fine-tuning config (data filled in, model = pretrain.model; "
                                                     "variants on top)")
    eval: EvalConfig = section(EvalConfig, "evaluation config")
    table_budget: float = option(0.05, "token-attack budget shown in the table")
    table_eps: float = option(0.5, "FGM ε shown in the table")

    def __post_init__(self):
        for name, overrides in self.variants.items():
            try:
                _with_overrides(self.finetune, overrides)
            except ConfigError as e:
                raise ConfigError(f"config key 'variants.{name}': {e.reason}") from None


def _with_overrides(cfg: RMTrainConfig, overrides: list[str]) -> RMTrainConfig:
    from rrpo.config import _build, parse_override, to_dict, _set_dotted

    data = to_dict(cfg)
    for text in overrides:
        k, v = parse_override(text)
        _set_dotted(data, k, v)
    return _build(RMTrainConfig, data)


def _prepare(cfg: AblationConfig, data_root: str, out: Path) -> AblationConfig:
    """Prepare manifests of the shared corpora and tokenize them with ``cfg.codec``."""
    from rrpo.data.corpora import prepare_corpus
    from rrpo.reward.data import tokenize_manifest

    root = Path(data_root)
    if not cfg.codec:
        raise RrpoError("data= needs a codec to tokenize with (set codec=FOLDER)")
    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    upd = {}
    for name, corpus in (("casia", "casia"), ("esd", "esd")):
        man = d / f"{name}.jsonl"
        if not man.exists():
            prepare_corpus(corpus, root / name, man)
        tok = d / f"{name}_tokens"
        tokenize_manifest(cfg.codec, man, tok)
        upd[f"{name}_manifest"], upd[f"{name}_tokens"] = str(man), str(tok)
    if not cfg.pretrain_manifest:
        try:
            from rrpo.data.synth import SynthConfig, synthesize
            man = d / "synth" / "manifest.jsonl"
            if not man.exists():
                synthesize(SynthConfig(languages=list(cfg.pretrain_languages), sentences_per_language=cfg.synth_sentences,
                                       voices_per_language=cfg.synth_voices), d / "synth")
            tok = d / "synth_tokens"
            tokenize_manifest(cfg.codec, man, tok)
            upd["pretrain_manifest"], upd["pretrain_tokens"] = str(man), str(tok)
        except (NotImplementedError, ImportError, TypeError, RrpoError) as e:
            log.warning("no synthetic corpus available (%s): fine-tuning from scratch", e)
    return dataclasses.replace(cfg, **upd)


def _casia_speakers(cfg: AblationConfig) -> list[str]:
    from rrpo.data.manifest import read_manifest
    return sorted({u.speaker for u in read_manifest(cfg.casia_manifest)})


def run_ablation(cfg: AblationConfig, out: str | Path, data: str | None = None) -> dict:
    from rrpo.reward.data import load_items
    from rrpo.reward.evaluate import evaluate_items
    from rrpo.reward.model import load_reward_model
    from rrpo.reward.train import train_rm
    from rrpo.runs import RunDir
    from rrpo.train.loop import latest_checkpoint

    out = Path(out)
    RunDir.create(out, cfg)
    if data:
        cfg = _prepare(cfg, data, out)
    for k in ("casia_manifest", "casia_tokens", "esd_manifest", "esd_tokens"):
        if not getattr(cfg, k):
            raise RrpoError(f"config key '{k}' is empty (give the path, or data= with a codec)")
    speakers = _casia_speakers(cfg)
    held = cfg.heldout_speakers or speakers[-1:]
    bad = [s for s in held if s not in speakers]
    if bad:
        raise RrpoError(f"held-out speaker(s) {bad} are not in the CASIA manifest ({speakers})")

    # the fine-tuned model has the pre-trained architecture (also when fine-tuning from scratch)
    model_cfg = cfg.pretrain.model
    if model_cfg.embedding != "free" and not model_cfg.token_features and cfg.codec:
        model_cfg = dataclasses.replace(model_cfg, token_features=cfg.codec)
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, model=model_cfg),
                              finetune=dataclasses.replace(cfg.finetune, model=model_cfg))

    # 1. pre-training (once)
    init = ""
    pretrain_note = "none: fine-tuned from scratch"
    if cfg.pretrain_manifest:
        pcfg = dataclasses.replace(cfg.pretrain, classes=list(cfg.classes), data=dataclasses.replace(
            cfg.pretrain.data, manifests=[cfg.pretrain_manifest], tokens=[cfg.pretrain_tokens],
            languages=list(cfg.pretrain_languages)))
        prun = out / "pretrain"
        if latest_checkpoint(prun) is None or _steps_done(prun) < pcfg.train.steps:
            train_rm(pcfg, prun)
        init = str(prun)
        pretrain_note = f"{cfg.pretrain_manifest} ({', '.join(cfg.pretrain_languages)})"

    esd_items = None
    results = []
    for h in held:
        casia_test = None
        for vname, overrides in cfg.variants.items():
            for seed in cfg.seeds:
                rdir = out / "runs" / h / _safe(vname) / f"seed{seed}"
                ev_path = rdir / "eval.json"
                if ev_path.exists():
                    results.append(json.loads(ev_path.read_text(encoding="utf-8")))
                    continue
                base = dataclasses.replace(cfg.finetune, classes=list(cfg.classes), init_from=init,
                                           data=dataclasses.replace(cfg.finetune.data, manifests=[cfg.casia_manifest],
                                                                    tokens=[cfg.casia_tokens], exclude_speakers=[h],
                                                                    speakers=[]))
                fcfg = _with_overrides(base, list(overrides) + [f"train.seed={seed}"])
                train_rm(fcfg, rdir, resume=True)
                model = load_reward_model(rdir)
                if casia_test is None:
                    casia_test, _ = load_items(DataConfig(manifests=[cfg.casia_manifest], tokens=[cfg.casia_tokens],
                                                          speakers=[h], max_tokens=0), model.classes, what="casia test")
                if esd_items is None:
                    esd_items, _ = load_items(DataConfig(manifests=[cfg.esd_manifest], tokens=[cfg.esd_tokens],
                                                         max_tokens=0), model.classes, what="esd")
                rec = {"heldout": h, "variant": vname, "seed": seed,
                       "casia": evaluate_items(model, casia_test, model.classes, cfg.eval),
                       "esd": evaluate_items(model, esd_items, model.classes, cfg.eval)}
                write_json(ev_path, rec)
                results.append(rec)
    write_json(out / "results.json", {"pretrain": pretrain_note, "results": results})
    table = make_table(results, list(cfg.variants), cfg, pretrain_note)
    with atomic_open(out / "table.md") as f:
        f.write(table)
    plot = make_plot(results, list(cfg.variants), out / "plot.png")
    return {"out": str(out), "table": str(out / "table.md"), "plot": plot, "pretrain": pretrain_note,
            "results": results}


def _steps_done(run: Path) -> int:
    from rrpo.train.loop import latest_checkpoint
    ck = latest_checkpoint(run)
    return -1 if ck is None else int(ck.name.split("_")[1])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "variant"


def _get(rec: dict, path: str):
    cur = rec
    for p in path.split("/"):
        if cur is None:
            return None
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur


def _mean_std(vals: list[float]) -> str:
    from rrpo.stats import mean_std
    m, s = mean_std(vals)
    if math.isnan(m):
        return "–"
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def table_columns(cfg: AblationConfig) -> list[tuple[str, str]]:
    cols = [("CASIA held-out UA", "casia/ua"), ("CASIA WA", "casia/wa"), ("ESD en UA", "esd/ua"),
            ("ESD en WA", "esd/wa"), ("ESD ECE", "esd/ece"), ("CASIA ECE", "casia/ece")]
    if cfg.eval.robustness:
        cols += [("CASIA acc (attacked subset)", "casia/h_attack_clean_acc"),
                 (f"CASIA acc FGM ε={cfg.table_eps:g}", f"casia/fgm_acc/{cfg.table_eps}"),
                 (f"CASIA token attack success @{cfg.table_budget:g}",
                  f"casia/token_attack/success/{cfg.table_budget}")]
    return cols


def make_table(results: list[dict], variants: list[str], cfg: AblationConfig, pretrain_note: str) -> str:
    """Markdown table: one row per variant, mean ± std (×100) over seeds and held-out speakers."""
    cols = table_columns(cfg)
    held = sorted({r["heldout"] for r in results})
    seeds = sorted({r["seed"] for r in results})
    lines = [f"Reward-model ablation: fine-tuned on CASIA without the held-out speaker(s) {', '.join(held)}; "
             f"seeds {seeds}; pre-training: {pretrain_note}. Values ×100, mean ± std over "
             f"{len(seeds)} seed(s) × {len(held)} held-out speaker(s).", "",
             "| variant | " + " | ".join(c for c, _ in cols) + " |",
             "| --- | " + " | ".join("---" for _ in cols) + " |"]
    for v in variants:
        rs = [r for r in results if r["variant"] == v]
        lines.append(f"| {v} | " + " | ".join(_mean_std([_get(r, k) for r in rs]) for _, k in cols) + " |")
    return "\n".join(lines) + "\n"


def make_plot(results: list[dict], variants: list[str], path: Path) -> str:
    """Bar chart of UA (mean ± std) in-language and cross-lingual per variant (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rrpo.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(variants))
    for n, (key, label) in enumerate((("casia/ua", "CASIA held-out (zh)"), ("esd/ua", "ESD (en)"))):
        ms, ss = [], []
        for v in variants:
            vals = [_get(r, key) for r in results if r["variant"] == v]
            vals = [100 * a for a in vals if a is not None]
            ms.append(np.mean(vals) if vals else np.nan)
            ss.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
        ax.bar(x + (n - 0.5) * 0.38, ms, 0.38, yerr=ss, capsize=3, label=label)
    ax.axhline(20, color="grey", lw=0.8, ls="--", label="chance (5 classes)")
    ax.set_xticks(x, variants)
    ax.set_ylabel("UA (%)")
    ax.set_title("Reward-model regulariser ablation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return str(path)
