"""`rrpo rm train / eval / ablation` on tiny token corpora: resume, every parameter trains, CLI output."""

import json

import numpy as np
import pytest
import torch

import rrpo.cli
from rrpo.cli import main
from rrpo.config import load_config
from rrpo.reward.train import RMTrainConfig, build_model, make_objective, train_rm

from tests.unit.reward_fixtures import make_corpus

TINY = [
    "model.d_model=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "model.d_ff=32",
    "model.pool_dim=8",
    "train.batch_size=8",
    "train.progress=false",
    "train.log_every=1",
    "train.lr=3e-3",
]
ALLREG = ["reg.label_smoothing=0.1", "reg.eam.enabled=true", "reg.fgm.enabled=true", "reg.tat.enabled=true"]


@pytest.fixture(autouse=True)
def _only_reward_verbs(monkeypatch):
    """The CLI with only this part's verbs, so these tests do not depend on other parts' modules."""
    monkeypatch.setattr(rrpo.cli, "VERB_MODULES", ("rrpo.reward.commands",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("rmdata")
    man, tok = make_corpus(root, per_class=4)
    phi = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    np.save(root / "phi.npy", phi)
    return man, tok, root / "phi.npy"


def _cfg(corpus, *extra):
    man, tok, _ = corpus
    return load_config(RMTrainConfig, None, [f"data.manifests=[{man}]", f"data.tokens=[{tok}]", *TINY, *extra])


def test_resume_repeats_losses(corpus, tmp_path):
    """4 steps straight vs a run interrupted after its step-2 checkpoint and resumed: identical
    logged losses (EAM, FGM, TAT, speed-perturbation and token-noise randomness included)."""
    import shutil

    aug = ["data.tempo=[0.7, 1.4]", "data.token_noise=0.1"]
    full = train_rm(_cfg(corpus, "train.steps=4", *aug, *ALLREG), tmp_path / "a")
    cfg = _cfg(corpus, "train.steps=4", "train.ckpt_every=2", *aug, *ALLREG)
    train_rm(cfg, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_4")  # as if killed after step 3
    train_rm(cfg, tmp_path / "b")
    from rrpo.runs import RunDir

    la = [m["rm/loss"] for m in RunDir(tmp_path / "a").read_metrics()]
    lb = [m["rm/loss"] for m in RunDir(tmp_path / "b").read_metrics()]
    assert len(la) == 4 and la == pytest.approx(lb, rel=1e-6)
    assert full["last"]["rm/loss"] == pytest.approx(lb[-1], rel=1e-6)


def test_all_parameters_change_with_every_regulariser(corpus, tmp_path):
    man, tok, phi = corpus
    cfg = _cfg(corpus, "train.steps=3", *ALLREG, "model.embedding=free+features", f"model.token_features={phi}")
    torch.manual_seed(cfg.train.seed)
    model, _ = build_model(cfg, 32)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    from rrpo.reward.data import collate, load_items
    from rrpo.runs import RunDir
    from rrpo.train.loop import EpochBatches, train

    items, _ = load_items(cfg.data, tuple(cfg.classes))
    train(
        model,
        make_objective(model, cfg.reg),
        EpochBatches(len(items), 8, lambda i: collate([items[k] for k in i])),
        cfg.train,
        RunDir.create(tmp_path / "r", cfg),
    )
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged


def test_objective_adds_alpha_times_adversarial_loss(corpus):
    """With FGM on, loss = L_emo + α·L_adv and L_adv >= L_emo (δ ascends the loss, to first order)."""
    cfg = _cfg(corpus, "reg.fgm.enabled=true", "reg.fgm.alpha=0.5", "reg.fgm.eps=0.5", "model.dropout=0.0")
    torch.manual_seed(0)
    model, _ = build_model(cfg, 32)
    from rrpo.reward.data import collate, load_items

    items, _ = load_items(cfg.data, tuple(cfg.classes))
    loss, m = make_objective(model, cfg.reg)(collate(items[:8]), 0)
    assert float(loss.detach()) == pytest.approx(m["rm/l_emo"] + 0.5 * m["rm/l_adv"], rel=1e-5)
    assert m["rm/l_adv"] > m["rm/l_emo"]


def test_objective_adds_beta_times_token_adversarial_loss(corpus):
    """With TAT on (FGM off), loss = L_emo + β·L_tok, one position per utterance (5 % of < 30 tokens,
    at least one) is substituted, and L_tok >= L_emo (the substitution ascends the loss, to first order)."""
    cfg = _cfg(corpus, "reg.tat.enabled=true", "reg.tat.beta=0.7", "reg.tat.frac=0.05", "model.dropout=0.0")
    torch.manual_seed(0)
    model, _ = build_model(cfg, 32)
    from rrpo.reward.data import collate, load_items

    items, _ = load_items(cfg.data, tuple(cfg.classes))
    batch = collate(items[:8])
    assert int(batch["lens"].max()) < 30
    loss, m = make_objective(model, cfg.reg)(batch, 0)
    assert float(loss.detach()) == pytest.approx(m["rm/l_emo"] + 0.7 * m["rm/l_tok"], rel=1e-5)
    assert m["rm/tat_changed"] == 1.0
    assert m["rm/l_tok"] > m["rm/l_emo"]


def test_cli_train_finetune_eval(corpus, tmp_path, capsys):
    man, tok, _ = corpus
    base = [f"data.manifests=[{man}]", f"data.tokens=[{tok}]", *TINY]
    assert (
        main(["rm", "train", f"out={tmp_path / 'pre'}"] + base + ["train.steps=3", "data.exclude_speakers=[s4]"]) == 0
    )
    capsys.readouterr()
    assert (
        main(
            ["rm", "train", f"out={tmp_path / 'ft'}"]
            + base
            + ["train.steps=2", f"init_from={tmp_path / 'pre'}", "classes=[neutral, happy, angry, sad]", *ALLREG]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["init"]["head_reinitialised"] is True
    assert (
        main(
            [
                "rm",
                "eval",
                f"rm={tmp_path / 'pre'}",
                f"manifest={man}",
                f"tokens={tok}",
                "speakers=[s4]",
                "classes=[happy, sad]",
                "attack.token_steps=2",
                "attack.max_utterances=4",
                "attack.eps=[0.5]",
                "attack.pgd_steps=2",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["restricted_logits"] is True and out["classes"] == ["happy", "sad"] and out["n"] == 8
    assert out["dropped_other_emotions"] == 12
    for k in ("wa", "ua", "macro_f1", "ece", "confusion", "fgm_acc", "pgd_acc", "token_attack"):
        assert k in out
    assert len(out["confusion"]) == 2 and set(out["token_attack"]["success"]) == {"0.02", "0.05", "0.1", "0.2"}
    # a bad class is a one-line error
    assert (
        main(["rm", "eval", f"rm={tmp_path / 'ft'}", f"manifest={man}", f"tokens={tok}", "classes=[surprise, happy]"])
        == 2
    )


def test_ablation_end_to_end_on_fake_data(tmp_path, capsys):
    casia, casia_tok = make_corpus(tmp_path, "casia", per_class=3)
    esd, esd_tok = make_corpus(tmp_path, "esd", speakers=("0020",), per_class=3, language="en", seed=1)
    pre, pre_tok = make_corpus(tmp_path, "synth", speakers=("v1",), per_class=3, seed=2)
    # a second pre-training corpus without surprise: its loss masks that class
    pre2, pre2_tok = make_corpus(
        tmp_path, "ur", speakers=("u1",), per_class=3, seed=3, classes=("neutral", "happy", "angry", "sad")
    )
    tiny = [f"{sec}.{o}" for sec in ("pretrain", "finetune") for o in TINY]
    np.save(tmp_path / "phi.npy", np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32))
    args = [
        "rm",
        "ablation",
        "pretrain.model.embedding=free+features",
        f"pretrain.model.token_features={tmp_path / 'phi.npy'}",
        "finetune.model.unseen_tokens=nearest",
        "finetune.model.min_token_count=5",
        f"out={tmp_path / 'abl'}",
        f"casia_manifest={casia}",
        f"casia_tokens={casia_tok}",
        f"esd_manifest={esd}",
        f"esd_tokens={esd_tok}",
        f"pretrain_manifests=[{pre}, {pre2}]",
        f"pretrain_tokens=[{pre_tok}, {pre2_tok}]",
        f"casia_pad_manifest={casia}",
        f"casia_pad_tokens={casia_tok}",
        "seeds=[0, 1]",
        "pretrain.train.steps=2",
        "finetune.train.steps=2",
        "heldout_speakers=[s3, s4]",
        "variants={vanilla: [], full: [reg.label_smoothing=0.1, reg.eam.enabled=true, reg.fgm.enabled=true, "
        "model.unseen_tokens=keep]}",
        "ensemble_of=full",
        "ensemble_seeds=[0, 1]",
        "eval.attack.token_steps=1",
        "eval.attack.max_utterances=3",
        "eval.attack.eps=[0.1]",
        "table_eps=0.1",
        "eval.attack.pgd_steps=1",
        "table_budgets=[0.05]",
        *tiny,
    ]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    table = (tmp_path / "abl" / "table.md").read_text()
    assert "| vanilla |" in table and "| full |" in table and "| ensemble |" in table and "±" in table
    assert "Per-class recall, ESD English" in table and "Paired differences to vanilla" in table
    assert "| full | " in table.split("trade-off")[1]
    # token-attack success by confidence third, with the attacked counts of every run summed
    conf = table.split("by the model's own confidence")[1].split("\n\n")[1].splitlines()
    assert conf[0].startswith("| variant | least confident third") and conf[2].startswith("| vanilla | ")
    van_runs = [json.loads(p.read_text()) for p in (tmp_path / "abl" / "runs").glob("*/vanilla/seed*/eval.json")]
    n_att = sum(r["casia"]["token_attack"]["attacked"] for r in van_runs)
    assert sum(int(k) for k in conf[2].split(" | ")[-1].rstrip(" |").split(" / ")) == n_att
    assert (tmp_path / "abl" / "plot.png").stat().st_size > 1000
    results = json.loads((tmp_path / "abl" / "results.json").read_text())["results"]
    assert len(results) == 2 * 2 * 2 + 2 and {r["heldout"] for r in results} == {"s3", "s4"}
    ens = [r for r in results if r["variant"] == "ensemble"]
    assert len(ens) == 2 and "pgd_acc" not in ens[0]["casia"] and "token_attack" in ens[0]["casia"]
    van = next(r for r in results if r["variant"] == "vanilla")
    # the "padded" set is the same set here: every prediction agrees
    assert van["casia_pad"]["agreement"] == 1.0 and set(van["esd"]["recall"]) == set(van["esd"]["classes"])
    assert res["pretrain"] == "synth.jsonl, ur.jsonl"
    meta = json.loads(next((tmp_path / "abl" / "pretrain" / "checkpoints").iterdir()).joinpath("meta.json").read_text())
    assert meta["data"]["masked_classes"] == {str(pre2): ["surprise"]}

    # the fine-tunings read rare tokens as the finetune section and the variant say (the architecture is
    # the pre-trained model's)
    def reading(v):
        ck = next((tmp_path / "abl" / "runs" / "s3" / v / "seed0" / "checkpoints").iterdir())
        m = json.loads((ck / "meta.json").read_text())["rm"]["model"]
        return m["unseen_tokens"], m["min_token_count"], m["embedding"]

    assert reading("vanilla") == ("nearest", 5, "free+features") and reading("full")[0] == "keep"
    # rerun: every finished run is skipped, same table
    assert main(args) == 0
    assert (tmp_path / "abl" / "table.md").read_text() == table


class _FakeCodec:
    """Tokens = frame index mod 7 + (3 if loud); energies via frame_energy (what a codec reports)."""

    vocab_size, frame_rate, sampling_rate, can_decode = 16, 25.0, 16000, False

    def encode_with_energy(self, audio, sr):
        from rrpo.codec.base import frame_energy

        n = max(1, int(len(audio) / sr * self.frame_rate))
        e = frame_energy(audio, sr, self.frame_rate, n)
        return (np.arange(n) % 7 + 3 * (e > 0.01)).astype(np.int64), e

    def token_features(self):
        return None


def test_eval_with_codec_tokenizes_on_the_fly(tmp_path, capsys, monkeypatch):
    """`rrpo rm eval --codec` gives the same JSON as tokenizing first and passing --tokens."""
    import soundfile as sf

    import rrpo.codec
    from rrpo.data.manifest import Utterance, write_manifest
    from rrpo.reward.data import tokenize_manifest

    monkeypatch.setattr(rrpo.codec, "load_codec", lambda path: _FakeCodec())
    recs = []
    for n, emo in enumerate(["neutral", "happy", "angry", "sad"] * 2):
        sig = (0.05 + 0.1 * (n % 4)) * np.sin(np.arange(8000) * 0.05 * (1 + n)).astype(np.float32)
        sf.write(tmp_path / f"u{n}.wav", sig, 16000)
        recs.append(Utterance(f"u{n}", f"u{n}.wav", 16000, 0.5, "", "s", "en", emo, "test"))
    man = write_manifest(tmp_path / "m.jsonl", recs).path
    shards = tokenize_manifest("fake", str(man), str(tmp_path / "tok"))
    from rrpo.codec.shards import TokenShards

    tok, en = TokenShards(shards).get("u0")
    assert len(tok) == 12 and en.dtype == np.float32
    cfg = load_config(
        RMTrainConfig, None, [f"data.manifests=[{man}]", f"data.tokens=[{shards}]", *TINY, "train.steps=2"]
    )
    train_rm(cfg, tmp_path / "rm")
    capsys.readouterr()
    common = ["rm", "eval", f"rm={tmp_path / 'rm'}", f"manifest={man}", "robustness=false"]
    assert main(common + ["codec=fake"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(common + [f"tokens={shards}"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a == b and a["n"] == 8 and a["classes"] == ["neutral", "happy", "angry", "sad"]


@pytest.mark.slow
def test_ablation_jobs_in_processes_equal_one_process(tmp_path, capsys):
    """jobs=2 (two spawned one-thread processes) gives the same evaluations as jobs=1."""
    casia, casia_tok = make_corpus(tmp_path, "casia", per_class=2)
    esd, esd_tok = make_corpus(tmp_path, "esd", speakers=("0020",), per_class=2, language="en", seed=1)
    tiny = [f"finetune.{o}" for o in TINY] + [f"pretrain.{o}" for o in TINY]
    base = [
        "rm",
        "ablation",
        f"casia_manifest={casia}",
        f"casia_tokens={casia_tok}",
        f"esd_manifest={esd}",
        f"esd_tokens={esd_tok}",
        "seeds=[0, 1]",
        "finetune.train.steps=2",
        "heldout_speakers=[s4]",
        "variants={vanilla: []}",
        "ensemble_of=",
        "eval.robustness=false",
        "silence_pad_s=0",
        *tiny,
    ]
    assert main([*base, f"out={tmp_path / 'one'}", "jobs=1"]) == 0
    assert main([*base, f"out={tmp_path / 'two'}", "jobs=2"]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())["results"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["results"]
    assert [r["esd"]["confusion"] for r in one] == [r["esd"]["confusion"] for r in two]
    assert [r["casia"]["ua"] for r in one] == pytest.approx([r["casia"]["ua"] for r in two])


def test_tempo_indices_worked_by_hand():
    """6 tokens at rate 2: n = 3, positions floor((0.5, 1.5, 2.5) * 2) = (1, 3, 5); at rate 0.5: n = 12,
    floor((k + 0.5) / 2) = 0,0,1,1,...,5,5; at rate 1: the identity; rate 0.8 on 4 tokens: n = 5,
    floor((0.4, 1.2, 2.0, 2.8, 3.6)) = (0, 1, 2, 2, 3)."""
    from rrpo.reward.data import tempo_indices

    assert tempo_indices(6, 2.0).tolist() == [1, 3, 5]
    assert tempo_indices(6, 0.5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert tempo_indices(6, 1.0).tolist() == [0, 1, 2, 3, 4, 5]
    assert tempo_indices(4, 0.8).tolist() == [0, 1, 2, 2, 3]
    assert tempo_indices(1, 3.0).tolist() == [0]


def test_collate_tempo_resamples_tokens_and_energy_together():
    """With tempo = [2, 2] (rate fixed at 2) a 6-token item becomes tokens (1, 3, 5) and their
    energies; off by default (the batch is the items as given)."""
    from rrpo.reward.data import TokenItem, collate

    it = TokenItem("u", np.arange(10, 16), np.arange(6, dtype=np.float32) / 10, 0, "s", "zh")
    b = collate([it], tempo=[2.0, 2.0])
    assert b["tokens"].tolist() == [[11, 13, 15]] and b["lens"].tolist() == [3]
    assert b["energy"][0].tolist() == pytest.approx([0.1, 0.3, 0.5])
    assert collate([it])["tokens"].tolist() == [[10, 11, 12, 13, 14, 15]]


def test_collate_token_noise_replaces_the_given_fraction():
    """token_noise p: each position is replaced with probability p by a token uniform on [0, V).
    10,000 positions at p = 0.3, V = 1000: the replaced share is 0.3·(1 − 1/1000) ≈ 0.2997 in
    expectation (a redraw of the same id counts as kept), sd √(0.3·0.7/10⁴) ≈ 0.0046; every id stays in
    [0, V); the same torch seed gives the same batch; p = 0 leaves the tokens as they are."""
    from rrpo.reward.data import TokenItem, collate

    it = TokenItem("u", np.full(10_000, 7), np.ones(10_000, dtype=np.float32), 0, "s", "zh")
    torch.manual_seed(3)
    a = collate([it], token_noise=0.3, vocab_size=1000)["tokens"][0]
    torch.manual_seed(3)
    b = collate([it], token_noise=0.3, vocab_size=1000)["tokens"][0]
    assert torch.equal(a, b)
    share = float((a != 7).float().mean())
    assert 0.2997 - 4 * 0.0046 < share < 0.2997 + 4 * 0.0046
    assert int(a.min()) >= 0 and int(a.max()) < 1000
    assert collate([it])["tokens"][0].tolist() == [7] * 10_000
    with pytest.raises(ValueError, match="vocabulary"):
        collate([it], token_noise=0.3)


def test_token_noise_config_is_checked(corpus):
    from rrpo.errors import RrpoError

    with pytest.raises(RrpoError, match="token_noise"):
        _cfg(corpus, "data.token_noise=1.0")


@pytest.mark.parametrize("bad", ["[1.0]", "[0, 1.2]", "[1.5, 0.8]"])
def test_tempo_config_is_checked(corpus, bad):
    from rrpo.errors import RrpoError

    with pytest.raises(RrpoError, match="tempo"):
        _cfg(corpus, f"data.tempo={bad}")


def test_token_counts_add_up_over_pretraining_and_finetuning_and_resume_exactly(corpus, tmp_path):
    """Pre-training on speakers other than s4 counts their tokens; fine-tuning on s4 alone with
    unseen_tokens=nearest adds s4's counts (pre-training's data counted once, also after a resume),
    and an interrupted fine-tuning resumes to the same losses."""
    import shutil

    from rrpo.reward.data import load_items
    from rrpo.reward.model import load_reward_model
    from rrpo.runs import RunDir

    man, tok, phi = corpus
    feats = ["model.embedding=free+features", f"model.token_features={phi}"]
    pre = _cfg(corpus, "train.steps=2", "data.exclude_speakers=[s4]", *feats)
    train_rm(pre, tmp_path / "pre")

    def counts(cfg):
        items, summary = load_items(cfg.data, cfg.classes)
        c = np.zeros(summary["vocab_size"])
        for it in items:
            np.add.at(c, it.tokens, 1)
        return c

    c_pre = counts(pre)
    assert load_reward_model(tmp_path / "pre").token_count.numpy() == pytest.approx(c_pre)
    c_all = c_pre + counts(_cfg(corpus, "data.speakers=[s4]"))
    k = int(np.median(c_all))  # about half the tokens are rare
    near = ["model.unseen_tokens=nearest", f"model.min_token_count={k}", f"init_from={tmp_path / 'pre'}"]
    ft = _cfg(corpus, "train.steps=4", "train.ckpt_every=2", "data.speakers=[s4]", *near, "reg.label_smoothing=0.1")
    full = train_rm(
        _cfg(corpus, "train.steps=4", "data.speakers=[s4]", *near, "reg.label_smoothing=0.1"), tmp_path / "a"
    )
    train_rm(ft, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_4")
    train_rm(ft, tmp_path / "b")
    m = load_reward_model(tmp_path / "b")
    assert m.token_count.numpy() == pytest.approx(c_all)
    rare = c_all < k
    assert 0 < rare.sum() < len(rare)  # the map is not trivial
    assert full["data"]["rare_tokens"] == int(rare.sum())
    tm = m.token_map().numpy()
    assert (tm[~rare] == np.arange(len(rare))[~rare]).all() and not rare[tm].any()
    la = [x["rm/loss"] for x in RunDir(tmp_path / "a").read_metrics()]
    lb = [x["rm/loss"] for x in RunDir(tmp_path / "b").read_metrics()]
    assert len(la) == 4 and la == pytest.approx(lb, rel=1e-6)
