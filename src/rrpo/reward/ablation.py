"""``rrpo rm ablation``: the regulariser ablation (the paper's Table 2) on our data, from one config.

Pre-train once (on the multilingual corpora ASED + nEMO + URDU, optionally with the synthetic
corpus; from scratch when none is given). Then, for every held-out CASIA speaker, variant and seed:
fine-tune on the other CASIA speakers and evaluate on the held-out speaker (in-language), on ESD
English (cross-lingual, never trained on) and, with ``silence_pad_s``, on both sets padded with
silence (robustness to how a corpus was cut: UA, per-class recall and agreement with the unpadded
predictions). Variants are config overrides of the fine-tuning config
(``variants: {name: [key=value, ...]}``). ``ensemble_of`` adds an ensemble row: the seeds
``ensemble_seeds`` of that variant scored as one model (mean probability; the h' attacks do not
apply to an ensemble and are left blank).

Outputs under ``out``: ``pretrain/`` (run), ``runs/<heldout>/<variant>/seed<k>/`` (run +
``eval.json``), ``runs/<heldout>/ensemble/eval.json``, ``results.json`` (every evaluation),
``table.md`` (mean ± std over seeds and held-out speakers, per-class recall, paired differences to
vanilla with 95 % intervals) and ``plot.png``. Finished runs are skipped, so an interrupted
ablation resumes.
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
from rrpo.stats import t_interval

log = logging.getLogger(__name__)

DEFAULT_VARIANTS = {
    "vanilla": [],
    "+LS": ["reg.label_smoothing=0.1"],
    "+LS+EAM": ["reg.label_smoothing=0.1", "reg.eam.enabled=true"],
    "+LS+EAM+FGM": ["reg.label_smoothing=0.1", "reg.eam.enabled=true", "reg.fgm.enabled=true"],
}

#: the multilingual pre-training corpora of ../shared/data that data= prepares
PRETRAIN_CORPORA = ("ased", "nemo", "urdu")


@dataclass
class AblationConfig:
    classes: list[str] = option(list(ESD_CLASSES), "emotion classes of every reward model")
    casia_manifest: str = option("", "CASIA manifest (fine-tuning and in-language test)")
    casia_tokens: str = option("", "CASIA token shards")
    esd_manifest: str = option("", "ESD English manifest (cross-lingual test only)")
    esd_tokens: str = option("", "ESD token shards")
    pretrain_manifests: list[str] = option([], "pre-training manifests ([] = fine-tune from scratch)")
    pretrain_tokens: list[str] = option([], "their token shards (one per manifest, or one for all)")
    pretrain_languages: list[str] = option([], "languages of the pre-training manifests to use ([] = all)")
    pretrain_corpora: list[str] = option(
        list(PRETRAIN_CORPORA), "with data=: corpora of the data folder to pre-train on (ased, nemo, urdu)"
    )
    pretrain_synth: bool = option(False, "with data=: also pre-train on the synthetic corpus' Mandarin part")
    codec: str = option("", "codec folder, used with data= to tokenize the corpora")
    synth_sentences: int = option(32, "with data=: sentences of the synthetic Mandarin pre-training corpus")
    synth_voices: int = option(4, "with data=: voices of the synthetic Mandarin pre-training corpus")
    silence_pad_s: float = option(
        1.0,
        "with data=: also evaluate on both test sets padded with this much "
        "low-level noise (-70 dBFS) before and after each clip, at 22.05 kHz (0 = off)",
    )
    casia_pad_manifest: str = option("", "padded CASIA manifest (made by data= when silence_pad_s > 0)")
    casia_pad_tokens: str = option("", "its token shards")
    esd_pad_manifest: str = option("", "padded ESD manifest")
    esd_pad_tokens: str = option("", "its token shards")
    heldout_speakers: list[str] = option([], "CASIA speakers to hold out in turn ([] = the last one alone)")
    seeds: list[int] = option([0, 1, 2], "fine-tuning seeds")
    variants: dict[str, list[str]] = option(DEFAULT_VARIANTS, "variant name -> fine-tuning config overrides")
    ensemble_of: str = option("+LS+EAM+FGM", "variant whose seeds form the ensemble row ('' = no ensemble)")
    ensemble_seeds: list[int] = option([0, 1, 2], "seeds of that variant in the ensemble (trained if missing)")
    ensemble_aggregate: str = option(
        "mean",
        "how the ensemble's rewards combine (mean, min, mean_minus_std); metrics use the members' mean probability",
    )
    pretrain: RMTrainConfig = section(RMTrainConfig, "pre-training config (its data section is filled in)")
    finetune: RMTrainConfig = section(
        RMTrainConfig, "fine-tuning config (data filled in, model = pretrain.model; variants on top)"
    )
    eval: EvalConfig = section(EvalConfig, "evaluation config")
    table_budgets: list[float] = option([0.02, 0.05, 0.1], "token-attack budgets shown in the table")
    table_eps: float = option(0.1, "FGM/PGD ε shown in the table (one of eval.attack.eps)")
    baseline: str = option("vanilla", "variant the paired differences are taken against")
    jobs: int = option(1, "fine-tune/evaluate this many runs at once, in processes of one thread each")
    threads: int = option(
        0,
        "torch threads of this process (pre-training, jobs=1); 0 = torch's default. "
        "On a loaded machine 1 avoids threads spinning against each other",
    )

    def __post_init__(self):
        from rrpo.config import check

        check(self.jobs >= 1, "jobs", "must be >= 1")
        check(self.threads >= 0, "threads", "must be >= 0")
        for name, overrides in self.variants.items():
            try:
                _with_overrides(self.finetune, overrides)
            except ConfigError as e:
                raise ConfigError(f"config key 'variants.{name}': {e.reason}") from None


def _with_overrides(cfg: RMTrainConfig, overrides: list[str]) -> RMTrainConfig:
    from rrpo.config import _build, _set_dotted, parse_override, to_dict

    data = to_dict(cfg)
    for text in overrides:
        k, v = parse_override(text)
        _set_dotted(data, k, v)
    return _build(RMTrainConfig, data)


def pad_manifest(
    src: str | Path, out: Path, seconds: float, level_db: float = -70.0, sr: int = 22050, seed: int = 0
) -> Path:
    """Write a copy of manifest ``src`` whose clips have ``seconds`` of Gaussian noise at ``level_db`` dBFS
    (RMS) before and after, resampled to ``sr``: a corpus cut differently and recorded elsewhere.
    Returns the new manifest (``out/manifest.jsonl``; audio under ``out/audio``); kept if present."""
    import numpy as np

    from rrpo.data.audio import load_audio, save_audio
    from rrpo.data.manifest import read_manifest, write_manifest

    dest = out / "manifest.jsonl"
    if dest.exists():
        return dest
    man = read_manifest(src)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    recs = []
    for u in man:
        x, _ = load_audio(man.audio_path(u), sr=sr)
        y = np.concatenate(
            [rng.standard_normal(n) * 10 ** (level_db / 20), x, rng.standard_normal(n) * 10 ** (level_db / 20)]
        ).astype(np.float32)
        path = out / "audio" / f"{u.id}.wav"
        save_audio(path, y, sr)
        recs.append(dataclasses.replace(u, audio=str(path.resolve()), sampling_rate=sr, duration=len(y) / sr))
    write_manifest(dest, recs)
    return dest


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

    def prep(name: str) -> tuple[str, str]:
        man = d / f"{name}.jsonl"
        if not man.exists():
            prepare_corpus(name, root / name, man)
        tok = d / f"{name}_tokens"
        tokenize_manifest(cfg.codec, man, tok)
        return str(man), str(tok)

    for name in ("casia", "esd"):
        upd[f"{name}_manifest"], upd[f"{name}_tokens"] = prep(name)
        if cfg.silence_pad_s > 0:
            pman = pad_manifest(upd[f"{name}_manifest"], d / f"{name}_pad", cfg.silence_pad_s)
            upd[f"{name}_pad_manifest"] = str(pman)
            upd[f"{name}_pad_tokens"] = tokenize_manifest(cfg.codec, pman, d / f"{name}_pad_tokens")
    if not cfg.pretrain_manifests:
        mans, toks = [], []
        for name in cfg.pretrain_corpora:
            if not (root / name).is_dir():
                raise RrpoError(f"pre-training corpus '{name}' is not in the data folder", root)
            m, t = prep(name)
            mans.append(m)
            toks.append(t)
        if cfg.pretrain_synth:
            from rrpo.data.synth import SynthConfig, synthesize

            man = d / "synth" / "manifest.jsonl"
            if not man.exists():
                synthesize(
                    SynthConfig(
                        languages=["zh"],
                        sentences_per_language=cfg.synth_sentences,
                        voices_per_language=cfg.synth_voices,
                    ),
                    d / "synth",
                )
            mans.append(str(man))
            toks.append(tokenize_manifest(cfg.codec, man, d / "synth_tokens"))
        upd["pretrain_manifests"], upd["pretrain_tokens"] = mans, toks
    return dataclasses.replace(cfg, **upd)


def _casia_speakers(cfg: AblationConfig) -> list[str]:
    from rrpo.data.manifest import read_manifest

    return sorted({u.speaker for u in read_manifest(cfg.casia_manifest)})


def _evaluate(model, sets: dict, cfg: AblationConfig) -> dict:
    """Every test set of ``sets`` (name -> items); the attacks on the held-out CASIA speaker only, plus
    the agreement of the padded sets' predictions with the unpadded set's."""
    from rrpo.reward.evaluate import evaluate_items

    out = {}
    for name, items in sets.items():
        ecfg = cfg.eval if name == "casia" else dataclasses.replace(cfg.eval, robustness=False)
        out[name] = evaluate_items(model, items, model.classes, ecfg)
        if name.endswith("_pad") and name[:-4] in sets:
            out[name]["agreement"] = prediction_agreement(model, sets[name[:-4]], items)
    return out


def prediction_agreement(model, items_a, items_b) -> float:
    """Fraction of utterances (matched by id) whose predicted class is the same in both sets."""
    from rrpo.reward.metrics import predict

    b_ids = {it.id for it in items_b}
    a = [it for it in items_a if it.id in b_ids]
    by_id = {it.id: it for it in items_b}
    b = [by_id[it.id] for it in a]
    if not a:
        return float("nan")
    pa, _ = predict(model, a)
    pb, _ = predict(model, b)
    return float((pa.argmax(-1) == pb.argmax(-1)).float().mean())


def run_ablation(cfg: AblationConfig, out: str | Path, data: str | None = None) -> dict:
    from rrpo.reward.train import train_rm
    from rrpo.runs import RunDir
    from rrpo.train.loop import latest_checkpoint

    out = Path(out)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    RunDir.create(out, cfg)
    if data:
        cfg = _prepare(cfg, data, out)
    for k in ("casia_manifest", "casia_tokens", "esd_manifest", "esd_tokens"):
        if not getattr(cfg, k):
            raise RrpoError(f"config key '{k}' is empty (give the path, or data= with a codec)")
    if cfg.ensemble_of and cfg.ensemble_of not in cfg.variants:
        raise RrpoError(f"config key 'ensemble_of': '{cfg.ensemble_of}' is not a variant ({', '.join(cfg.variants)})")
    speakers = _casia_speakers(cfg)
    held = cfg.heldout_speakers or speakers[-1:]
    bad = [s for s in held if s not in speakers]
    if bad:
        raise RrpoError(f"held-out speaker(s) {bad} are not in the CASIA manifest ({speakers})")

    # the fine-tuned model has the pre-trained architecture (also when fine-tuning from scratch)
    model_cfg = cfg.pretrain.model
    if model_cfg.embedding != "free" and not model_cfg.token_features and cfg.codec:
        model_cfg = dataclasses.replace(model_cfg, token_features=cfg.codec)
    cfg = dataclasses.replace(
        cfg,
        pretrain=dataclasses.replace(cfg.pretrain, model=model_cfg),
        # ... but reads rare tokens as the fine-tuning config says (not a part of the architecture)
        finetune=dataclasses.replace(
            cfg.finetune,
            model=dataclasses.replace(
                model_cfg,
                unseen_tokens=cfg.finetune.model.unseen_tokens,
                min_token_count=cfg.finetune.model.min_token_count,
            ),
        ),
    )

    # 1. pre-training (once)
    init = ""
    pretrain_note = "none: fine-tuned from scratch"
    if cfg.pretrain_manifests:
        pcfg = dataclasses.replace(
            cfg.pretrain,
            classes=list(cfg.classes),
            data=dataclasses.replace(
                cfg.pretrain.data,
                manifests=list(cfg.pretrain_manifests),
                tokens=list(cfg.pretrain_tokens),
                languages=list(cfg.pretrain_languages),
            ),
        )
        prun = out / "pretrain"
        if latest_checkpoint(prun) is None or _steps_done(prun) < pcfg.train.steps:
            train_rm(pcfg, prun)
        init = str(prun)
        pretrain_note = ", ".join(Path(m).name for m in cfg.pretrain_manifests)
        if cfg.pretrain_languages:
            pretrain_note += f" ({', '.join(cfg.pretrain_languages)})"

    ens_on = bool(cfg.ensemble_of) and len(cfg.ensemble_seeds) >= 2
    # phase 1: every (held-out speaker, variant, seed) run, trained then evaluated (ensemble members
    # outside `seeds` trained only); phase 2: the ensembles. Jobs run in `jobs` processes.
    phase1 = [(h, v, s, True) for h in held for v in cfg.variants for s in cfg.seeds]
    if ens_on:
        phase1 += [(h, cfg.ensemble_of, s, False) for h in held for s in cfg.ensemble_seeds if s not in cfg.seeds]
    phase2 = [(h, "ensemble", -1, True) for h in held] if ens_on else []
    results = []
    for phase in (phase1, phase2):
        recs = _run_jobs([(cfg, str(out), init, job) for job in phase], cfg.jobs)
        results += [r for r in recs if r is not None]
    variants = list(cfg.variants) + (["ensemble"] if ens_on else [])
    order = {v: i for i, v in enumerate(variants)}
    results.sort(key=lambda r: (held.index(r["heldout"]), order[r["variant"]], r["seed"]))
    write_json(out / "results.json", {"pretrain": pretrain_note, "results": results})
    table = make_table(results, variants, cfg, pretrain_note)
    with atomic_open(out / "table.md") as f:
        f.write(table)
    plot = make_plot(results, variants, out / "plot.png", cfg)
    return {
        "out": str(out),
        "table": str(out / "table.md"),
        "plot": plot,
        "pretrain": pretrain_note,
        "results": results,
    }


def _run_jobs(jobs: list[tuple], n: int) -> list:
    """``_job`` over ``jobs``, in this process (n <= 1) or in ``n`` spawned processes of one thread each."""
    if n <= 1 or len(jobs) <= 1:
        return [_job(*j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_one_thread) as pool:
        return list(pool.map(_job_star, jobs))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _job_star(args: tuple):
    return _job(*args)


def _test_sets(cfg: AblationConfig, h: str, classes) -> dict:
    from rrpo.reward.data import load_items

    sets = {}
    for name, man, tok, spk in (
        ("casia", cfg.casia_manifest, cfg.casia_tokens, [h]),
        ("esd", cfg.esd_manifest, cfg.esd_tokens, []),
        ("casia_pad", cfg.casia_pad_manifest, cfg.casia_pad_tokens, [h]),
        ("esd_pad", cfg.esd_pad_manifest, cfg.esd_pad_tokens, []),
    ):
        if man and tok:
            sets[name], _ = load_items(
                DataConfig(manifests=[man], tokens=[tok], speakers=spk, max_tokens=0), classes, what=f"{name} test"
            )
    return sets


def _trained(cfg: AblationConfig, out: Path, init: str, h: str, vname: str, seed: int) -> Path:
    """The fine-tuned run of (held-out speaker, variant, seed), trained (or finished) if needed."""
    from rrpo.reward.train import train_rm
    from rrpo.train.loop import latest_checkpoint

    rdir = out / "runs" / h / _safe(vname) / f"seed{seed}"
    base = dataclasses.replace(
        cfg.finetune,
        classes=list(cfg.classes),
        init_from=init,
        data=dataclasses.replace(
            cfg.finetune.data,
            manifests=[cfg.casia_manifest],
            tokens=[cfg.casia_tokens],
            exclude_speakers=[h],
            speakers=[],
        ),
    )
    fcfg = _with_overrides(base, list(cfg.variants[vname]) + [f"train.seed={seed}"])
    if latest_checkpoint(rdir) is None or _steps_done(rdir) < fcfg.train.steps:
        train_rm(fcfg, rdir, resume=True)
    return rdir


def _job(cfg: AblationConfig, out: str, init: str, job: tuple) -> dict | None:
    """One ablation job: train and evaluate a run, train an ensemble member only, or evaluate an
    ensemble. Returns the evaluation record (None for a member trained only); ``eval.json`` caches it."""
    from rrpo.reward.ensemble import RewardEnsemble
    from rrpo.reward.model import load_reward_model

    h, vname, seed, evaluate = job
    out = Path(out)
    if vname == "ensemble":
        ev_path = out / "runs" / h / "ensemble" / "eval.json"
    else:
        ev_path = out / "runs" / h / _safe(vname) / f"seed{seed}" / "eval.json"
    if evaluate and ev_path.exists():
        return json.loads(ev_path.read_text(encoding="utf-8"))
    if vname == "ensemble":
        members = [load_reward_model(_trained(cfg, out, init, h, cfg.ensemble_of, s)) for s in cfg.ensemble_seeds]
        model = RewardEnsemble(members, cfg.ensemble_aggregate)
        head = {
            "heldout": h,
            "variant": "ensemble",
            "seed": -1,
            "members": f"{cfg.ensemble_of} seeds {list(cfg.ensemble_seeds)}",
        }
    else:
        rdir = _trained(cfg, out, init, h, vname, seed)
        if not evaluate:
            return None
        model = load_reward_model(rdir)
        head = {"heldout": h, "variant": vname, "seed": seed}
    rec = {**head, **_evaluate(model, _test_sets(cfg, h, model.classes), cfg)}
    write_json(ev_path, rec)
    return rec


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
    if sum(v is not None for v in vals) < 2:  # one run: no spread to show
        return f"{100 * m:.1f}"
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def _mean_only(vals: list) -> str:
    vals = [v for v in vals if v is not None]
    return f"{100 * sum(vals) / len(vals):.1f}" if vals else "–"


def table_columns(cfg: AblationConfig) -> list[tuple[str, str]]:
    e = str(cfg.table_eps)
    cols = [
        ("CASIA held-out UA", "casia/ua"),
        ("ESD en UA", "esd/ua"),
        ("CASIA ECE", "casia/ece"),
        ("ESD ECE", "esd/ece"),
    ]
    if cfg.eval.robustness:
        cols += [
            ("CASIA acc (attacked subset)", "casia/h_attack_clean_acc"),
            (f"CASIA acc PGD ε={cfg.table_eps:g}", f"casia/pgd_acc/{e}"),
            (f"PGD drop ε={cfg.table_eps:g}", "casia/pgd_drop"),
        ]
        cols += [(f"token attack success @{b:g}", f"casia/token_attack/success/{b}") for b in cfg.table_budgets]
    if cfg.casia_pad_manifest or cfg.silence_pad_s > 0:
        cols += [
            ("CASIA padded UA", "casia_pad/ua"),
            ("CASIA padded agreement", "casia_pad/agreement"),
            ("ESD padded UA", "esd_pad/ua"),
            ("ESD padded agreement", "esd_pad/agreement"),
        ]
    return cols


def _derive(rec: dict, cfg: AblationConfig) -> dict:
    """Adds ``casia/pgd_drop`` = clean accuracy of the attacked subset − PGD accuracy at table_eps."""
    c = rec.get("casia") or {}
    pgd = (c.get("pgd_acc") or {}).get(str(cfg.table_eps))
    if pgd is not None and c.get("h_attack_clean_acc") is not None:
        c["pgd_drop"] = c["h_attack_clean_acc"] - pgd
    return rec


def paired_difference(results: list[dict], variant: str, baseline: str, key: str) -> dict | None:
    """Mean of variant − baseline over the (held-out speaker, seed) pairs both have, with a 95 % t-interval."""

    base = {(r["heldout"], r["seed"]): _get(r, key) for r in results if r["variant"] == baseline}
    diffs = []
    for r in results:
        if r["variant"] != variant:
            continue
        if variant == "ensemble":  # one ensemble per held-out speaker: against the baseline's seed mean
            b = [v for (h, _), v in base.items() if h == r["heldout"] and v is not None]
            bv = sum(b) / len(b) if b else None
        else:
            bv = base.get((r["heldout"], r["seed"]))
        v = _get(r, key)
        if v is not None and bv is not None:
            diffs.append(v - bv)
    if not diffs:
        return None
    n = len(diffs)
    m = sum(diffs) / n
    lo, hi = t_interval(diffs)
    return {"n": n, "mean": m, "lo": lo, "hi": hi}


def make_table(results: list[dict], variants: list[str], cfg: AblationConfig, pretrain_note: str) -> str:
    """Markdown: one row per variant, mean ± std (×100) over seeds and held-out speakers; per-class recall
    on ESD English and the padded CASIA set; paired differences to the baseline variant."""
    results = [_derive(json.loads(json.dumps(r)), cfg) for r in results]
    cols = table_columns(cfg)
    held = sorted({r["heldout"] for r in results})
    seeds = sorted({r["seed"] for r in results if r["seed"] >= 0})
    lines = [
        f"Reward-model ablation: fine-tuned on CASIA without the held-out speaker(s) {', '.join(held)}; "
        f"seeds {seeds}; pre-training: {pretrain_note}. Values ×100, mean ± std over "
        f"{len(seeds)} seed(s) × {len(held)} held-out speaker(s) (the ensemble: one per held-out speaker). "
        f"PGD/FGM ε is relative to ‖h'‖ per utterance ({cfg.eval.attack.eps_mode}).",
        "",
        "| variant | " + " | ".join(c for c, _ in cols) + " |",
        "| --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    for v in variants:
        rs = [r for r in results if r["variant"] == v]
        lines.append(f"| {v} | " + " | ".join(_mean_std([_get(r, k) for r in rs]) for _, k in cols) + " |")
    for title, key in (("ESD English", "esd"), ("CASIA held-out, padded with silence", "casia_pad")):
        recs = [r for r in results if key in r]
        if not recs:
            continue
        classes = recs[0][key].get("classes", [])
        lines += [
            "",
            f"Per-class recall, {title} (×100, mean over runs):",
            "",
            "| variant | " + " | ".join(classes) + " |",
            "| --- | " + " | ".join("---" for _ in classes) + " |",
        ]
        for v in variants:
            rs = [r for r in recs if r["variant"] == v]
            vals = []
            for c in classes:
                xs = [_get(r, f"{key}/recall/{c}") for r in rs]
                xs = [x for x in xs if x is not None]
                vals.append(f"{100 * sum(xs) / len(xs):.0f}" if xs else "–")
            lines.append(f"| {v} | " + " | ".join(vals) + " |")
    eps_grid = sorted({e for r in results for e in ((r.get("casia") or {}).get("pgd_acc") or {})}, key=float)
    if eps_grid:
        lines += [
            "",
            "Accuracy–robustness trade-off on the held-out speaker: accuracy of the attacked subset "
            "clean and under PGD at each relative ε (×100, mean over runs):",
            "",
            "| variant | clean | " + " | ".join(f"PGD ε={e}" for e in eps_grid) + " |",
            "| --- | --- | " + " | ".join("---" for _ in eps_grid) + " |",
        ]
        for v in variants:
            rs = [r for r in results if r["variant"] == v and (r.get("casia") or {}).get("pgd_acc")]
            if not rs:
                continue
            cells = [_mean_only([_get(r, "casia/h_attack_clean_acc") for r in rs])]
            cells += [_mean_only([(r["casia"]["pgd_acc"] or {}).get(e) for r in rs]) for e in eps_grid]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    mid_b = cfg.table_budgets[len(cfg.table_budgets) // 2] if cfg.table_budgets else None
    conf_recs = [r for r in results if _get(r, "casia/token_attack/by_confidence") is not None]
    if cfg.eval.robustness and mid_b is not None and conf_recs:
        lines += [
            "",
            f"Token-attack success @{mid_b:g} by the model's own confidence: the correctly classified attacked "
            "utterances of each run cut into thirds by their clean probability of the true class "
            "(×100, mean over runs; n = attacked utterances per third, summed over runs):",
            "",
            "| variant | least confident third | middle third | most confident third | n |",
            "| --- | --- | --- | --- | --- |",
        ]
        for v in variants:
            rs = [r for r in conf_recs if r["variant"] == v]
            if not rs:
                continue
            cells = [
                _mean_only([_get(r, f"casia/token_attack/by_confidence/{t}/{mid_b}") for r in rs])
                for t in ("low", "mid", "high")
            ]
            ns = [sum(_get(r, "casia/token_attack/by_confidence/n")[i] for r in rs) for i in range(3)]
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {' / '.join(map(str, ns))} |")
    diff_keys = [("ESD en UA", "esd/ua"), ("CASIA held-out UA", "casia/ua"), ("CASIA ECE", "casia/ece")]
    if cfg.eval.robustness:
        diff_keys += [
            (
                f"token attack success @{cfg.table_budgets[len(cfg.table_budgets) // 2]:g}",
                f"casia/token_attack/success/{cfg.table_budgets[len(cfg.table_budgets) // 2]}",
            )
        ]
    rows = []
    for v in variants:
        if v == cfg.baseline:
            continue
        cells = []
        for _, k in diff_keys:
            d = paired_difference(results, v, cfg.baseline, k)
            cells.append(
                "–"
                if d is None
                else f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] (n={d['n']})"
            )
        rows.append(f"| {v} | " + " | ".join(cells) + " |")
    if rows and any(r["variant"] == cfg.baseline for r in results):
        lines += [
            "",
            f"Paired differences to {cfg.baseline} (×100, mean [95 % t-interval], pairs = held-out speaker "
            "× seed; the ensemble against the baseline's seed mean per speaker):",
            "",
            "| variant | " + " | ".join(c for c, _ in diff_keys) + " |",
            "| --- | " + " | ".join("---" for _ in diff_keys) + " |",
            *rows,
        ]
    return "\n".join(lines) + "\n"


def make_plot(results: list[dict], variants: list[str], path: Path, cfg: AblationConfig | None = None) -> str:
    """Two panels (PNG): UA in-language and cross-lingual per variant; robustness (PGD accuracy drop and
    token-attack success at the middle table budget) per variant. Bars are means, error bars std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rrpo.io import atomic_path

    if cfg is not None:
        results = [_derive(json.loads(json.dumps(r)), cfg) for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8 if len(variants) <= 5 else 4.6))
    x = np.arange(len(variants))

    def bars(ax, keys):
        w = 0.8 / len(keys)
        for n, (key, label) in enumerate(keys):
            ms, ss = [], []
            for v in variants:
                vals = [_get(r, key) for r in results if r["variant"] == v]
                vals = [100 * a for a in vals if a is not None]
                ms.append(np.mean(vals) if vals else np.nan)
                ss.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            ax.bar(x + (n - (len(keys) - 1) / 2) * w, ms, w, yerr=ss, capsize=3, label=label)
        if len(variants) > 5:  # long names would run into each other
            ax.set_xticks(x, variants, fontsize=8, rotation=30, ha="right")
        else:
            ax.set_xticks(x, variants, fontsize=8)
        ax.legend(fontsize=7)

    bars(axes[0], [("casia/ua", "CASIA held-out (zh)"), ("esd/ua", "ESD (en)"), ("casia_pad/ua", "CASIA padded")])
    axes[0].axhline(20, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("UA (%)")
    axes[0].set_title("Accuracy (dashed: chance)")
    mid = cfg.table_budgets[len(cfg.table_budgets) // 2] if cfg else 0.05
    bars(
        axes[1],
        [
            ("casia/pgd_drop", f"PGD accuracy drop ε={cfg.table_eps:g}" if cfg else "PGD drop"),
            (f"casia/token_attack/success/{mid}", f"token attack success @{mid:g}"),
        ],
    )
    axes[1].set_ylabel("%")
    axes[1].set_title("Robustness on the held-out speaker (lower is better)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return str(path)
