"""The policy: layout, teacher-forced forward, sampler, SFT trainer, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from rrpo.config import load_config
from rrpo.errors import ConfigError, RrpoError
from rrpo.policy.generate import Generation, generate, nucleus_mask, replay_logits, replay_mask
from rrpo.policy.model import IGNORE, Prompts, TTSPolicy, build_qwen_config, tiny_policy
from rrpo.policy.settings import SamplingConfig
from rrpo.policy.text import ENDOFPROMPT, INSTRUCTIONS, CharTokenizer

from tests.unit.policy_fixtures import TEXTS, VOCAB, make_corpus, run_tiny_sft, sft_overrides, tokens_for


def small_policy(speakers=("s1", "s2"), vocab=20, seed=0) -> TTSPolicy:
    tok = CharTokenizer.build(TEXTS + [INSTRUCTIONS["zh"][e] + ENDOFPROMPT for e in ("angry", "happy")])
    return tiny_policy(
        tok,
        vocab,
        hidden_size=32,
        layers=2,
        heads=4,
        kv_heads=2,
        intermediate_size=64,
        speakers=list(speakers),
        emotions=["angry", "happy"],
        languages=["zh"],
        seed=seed,
    )


def prompts_of(policy, n=3):
    texts = [TEXTS[i % len(TEXTS)][: 2 + i] for i in range(n)]
    emos = ["angry", "happy"] * n
    spk = ["s1", "s2"] * n if policy.speaker_embedding is not None else None
    return policy.encode_prompts(texts, emos[:n], "zh", spk[:n] if spk else None)


# ------------------------------------------------------------------------------------------ text


def test_char_tokenizer_worked_example(tmp_path):
    """Built from "ab", "ba": <pad>=0, <|endofprompt|>=1, a=2, b=3; "b<|endofprompt|>a" -> [3, 1, 2]."""
    tok = CharTokenizer.build(["ab", "ba"])
    assert tok.itos == ["<pad>", ENDOFPROMPT, "a", "b"]
    assert tok.encode("b" + ENDOFPROMPT + "a") == [3, 1, 2]
    tok.save(tmp_path)
    assert CharTokenizer.load(tmp_path).itos == tok.itos
    with pytest.raises(RrpoError, match="outside the policy's vocabulary: 'zq'"):
        tok.encode("azqz")


def test_unknown_emotion_is_an_input_error():
    pol = small_policy()
    with pytest.raises(RrpoError, match="not trained on emotion 'sad'"):
        pol.encode_prompts([TEXTS[0]], ["sad"], "zh", ["s1"])


# ------------------------------------------------------------------------------------------ layout


def test_parameter_names_follow_cosyvoice2():
    pol = small_policy(speakers=())
    names = dict((k, tuple(v.shape)) for k, v in pol.state_dict().items())
    assert names["llm_embedding.weight"] == (2, 32)
    assert names["llm_decoder.weight"] == (23, 32) and names["llm_decoder.bias"] == (23,)
    assert names["speech_embedding.weight"] == (23, 32)
    assert "llm.model.model.embed_tokens.weight" in names and "llm.model.model.layers.1.mlp.up_proj.weight" in names
    assert pol.eos_id == 20 and pol.n_out == 23


def test_targets_worked_example():
    """speech [[1,2,3,0],[4,5,6,7]], lens [2,4], eos 20 -> [[1,2,20,I,I],[4,5,6,7,20]]."""
    pol = small_policy()
    t = pol.targets(torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]]), torch.tensor([2, 4]))
    assert t.tolist() == [[1, 2, 20, IGNORE, IGNORE], [4, 5, 6, 7, 20]]


def test_token_loss_uniform_logits_is_log_vocab():
    """Zero head -> every logit 0 -> CE = ln(23) = 3.1355; argmax = id 0, so accuracy counts the
    targets equal to 0: speech [[0,5],[0,0]] lens [2,1] -> targets (0,5,eos),(0,eos): 2 of 5."""
    from rrpo.policy.sft import token_loss

    pol = small_policy()
    with torch.no_grad():
        pol.llm_decoder.weight.zero_()
        pol.llm_decoder.bias.zero_()
    batch = {
        "prompts": prompts_of(pol, 2),
        "speech": torch.tensor([[0, 5], [0, 0]]),
        "speech_lens": torch.tensor([2, 1]),
    }
    loss, ok, n = token_loss(pol, batch)
    assert loss.item() == pytest.approx(math.log(23), abs=1e-5)
    assert (int(ok), int(n)) == (2, 5)


def test_padding_does_not_change_a_row():
    pol = small_policy().eval()
    pr = prompts_of(pol, 3)
    speech = torch.randint(0, 20, (3, 6))
    lens = torch.tensor([2, 6, 4])
    with torch.no_grad():
        full = pol(pr, speech, lens)
        for i in range(3):
            one = pol(pr.select([i]), speech[i : i + 1, : lens[i]], lens[i : i + 1])
            torch.testing.assert_close(one[0], full[i, : lens[i] + 1], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ sampler


def test_nucleus_mask_worked_example():
    """p = (0.5, 0.3, 0.2): top_p 0.8 keeps ids 0, 1 (mass before id 2 is 0.8, not < 0.8);
    top_p 0.81 keeps all three; top_k 1 keeps id 0 only."""
    s = torch.log(torch.tensor([0.3, 0.5, 0.2]))  # order scrambled: id 1 is the most likely
    assert nucleus_mask(s, 0.8, 25).tolist() == [True, True, False]
    assert nucleus_mask(s, 0.81, 25).tolist() == [True, True, True]
    assert nucleus_mask(s, 0.8, 1).tolist() == [False, True, False]


def test_batched_equals_one_by_one_and_cache_equals_no_cache():
    pol = small_policy()
    pr = prompts_of(pol, 3)
    cfg = SamplingConfig(min_ratio=1, max_ratio=6)
    g = generate(pol, pr, cfg, seeds=[5, 6, 7])
    for i, s in enumerate([5, 6, 7]):
        one = generate(pol, pr.select([i]), cfg, seeds=[s])
        assert torch.equal(one.tokens(0), g.tokens(i))
        assert bool(one.ended[0]) == bool(g.ended[i])
        torch.testing.assert_close(one.noise[0, : int(one.lens[0]) + 1], g.noise[i, : int(g.lens[i]) + 1])
    nc = generate(pol, pr, SamplingConfig(min_ratio=1, max_ratio=6, use_cache=False), seeds=[5, 6, 7])
    assert torch.equal(nc.ids, g.ids) and torch.equal(nc.lens, g.lens)


def test_lengths_and_special_ids():
    """Release sampler: eos only after the minimum, the special rows never drawn. Current sampler:
    every stop id masked below the minimum, and a special row (S+1, S+2) stops a row, as upstream."""
    pol = small_policy()
    with torch.no_grad():
        pol.llm_decoder.bias[20:] += 8.0  # eos and the two special rows very likely
    pr = prompts_of(pol, 3)
    g = generate(pol, pr, SamplingConfig(min_ratio=2, max_ratio=3, ras="release"), seeds=0)
    n = pr.content_lens
    assert (g.lens >= 2 * n).all() and (g.lens <= 3 * n).all()
    assert g.ended.all()  # eos allowed (and likely) right after the minimum
    assert (g.ids < 20).all()  # special rows 21, 22 never drawn
    assert torch.equal(g.lens, 2 * n) and (g.stop == 20).all()
    c = generate(pol, pr, SamplingConfig(min_ratio=2, max_ratio=3, ras="current"), seeds=0)
    assert c.ended.all() and (c.ids < 20).all() and set(c.stop.tolist()) <= {20, 21, 22}
    assert (c.stop > 20).any() and torch.equal(c.lens, 2 * n)  # special rows stop, never below the minimum


def test_replayed_logits_plus_noise_give_the_sampled_ids():
    """The DiffRO contract: argmax(teacher-forced logits + returned noise) == drawn ids (fp32)."""
    pol = small_policy()
    g = generate(pol, prompts_of(pol, 3), SamplingConfig(min_ratio=1, max_ratio=5, temperature=0.7), seeds=3)
    logits = replay_logits(pol, g)
    m = replay_mask(g)
    assert logits.requires_grad
    drawn = pol.targets(g.ids, g.lens)
    ended = g.ended.nonzero().flatten()
    drawn[ended, g.lens[ended]] = g.stop[ended]  # eos, or a special row (current sampler)
    assert torch.equal((logits.detach() + g.noise).argmax(-1)[m], drawn[m])
    assert torch.isinf(g.noise[m]).any()  # filtered ids carry -inf


def test_repetition_aware_resampling_breaks_repeats():
    """top_k 1 always draws the most likely id (id 5, p ~ 0.51). With RAS (window 10, tau 0.1) a
    repeat inside the window is re-drawn from the full distribution, so other ids appear."""
    pol = small_policy()
    with torch.no_grad():
        pol.llm_decoder.weight.zero_()
        pol.llm_decoder.bias.zero_()
        pol.llm_decoder.bias[5] = 3.0
        pol.llm_decoder.bias[20:] = -30.0  # no early end (eos and, for the current sampler, the special rows)
    pr = prompts_of(pol, 1)
    off = generate(pol, pr, SamplingConfig(top_k=1, ras_window=0, max_ratio=10), seeds=1, max_len=30)
    on = generate(pol, pr, SamplingConfig(top_k=1, ras_window=10, ras_tau=0.1, max_ratio=10), seeds=1, max_len=30)
    assert off.tokens(0).tolist() == [5] * 30
    ids = on.tokens(0).tolist()
    assert len(ids) == 30 and len(set(ids)) > 5 and ids[0] == 5


def _draw_freqs(z, history, step, min_len, ras, n=20000, top_p=0.75):
    """Frequencies of _sample_row's ids over n seeds for logits z (S = 3: ids 0..2, eos 3, specials 4, 5)."""
    from rrpo.policy.generate import _sample_row

    cfg = SamplingConfig(top_p=top_p, top_k=25, ras=ras)
    counts = torch.zeros(6)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        tok, noise = _sample_row(z, history, step, min_len, 3, 3, cfg, g)
        counts[tok] += 1
        assert int((z + noise).argmax()) == tok  # the replay contract holds draw by draw
    return counts / n


def _logits(*p):
    return torch.log(torch.tensor(p, dtype=torch.float32).clamp_min(1e-30))


@pytest.mark.parametrize(
    "ras,expect",
    [
        # p = (0.5, 0.3, 0.1 | eos 0.1 | 0, 0), history ten 0s (window 10, tau 0.1: one 0 is a repeat).
        # (top_p 0.75 in these tests: no mass lands exactly on the threshold) nucleus keeps {0, 1}: 0 with 0.625, 1 with 0.375. Drawing 0 triggers the re-draw:
        # release: from the full (0.5, 0.3, 0.1, 0.1) -> P = (.625*.5, .375+.625*.3, .625*.1, .625*.1)
        ("release", [0.3125, 0.5625, 0.0625, 0.0625, 0, 0]),
        # current: 0 banned, from (0.3, 0.1, 0.1)/0.5 -> P = (0, .375+.625*.6, .625*.2, .625*.2)
        ("current", [0.0, 0.75, 0.125, 0.125, 0, 0]),
    ],
)
def test_ras_fallback_hand_worked(ras, expect):
    f = _draw_freqs(_logits(0.5, 0.3, 0.1, 0.1, 0, 0), [0] * 10, step=5, min_len=0, ras=ras)
    assert torch.allclose(f, torch.tensor(expect), atol=0.012), f


@pytest.mark.parametrize(
    "ras,expect",
    [
        # p = (0.5, 0.1, 0.1 | eos 0.3 | 0, 0), below the minimum length, no history.
        # release: nucleus on all four keeps {0, eos} (mass before id 1 is 0.8 >= 0.75;
        # ids 1 and 2 tie and are ordered by id, as upstream's stable sort); eos is re-drawn -> P(0) = 1
        ("release", [1.0, 0, 0, 0, 0, 0]),
        # current: eos masked first, (0.5, 0.1, 0.1)/0.7 -> nucleus keeps {0, 1} (before id 1: 0.714, before id 2: 0.857)
        # -> P = (0.5/0.6, 0.1/0.6, 0) = (5/6, 1/6, 0)
        ("current", [5 / 6, 1 / 6, 0, 0, 0, 0]),
    ],
)
def test_eos_below_min_len_hand_worked(ras, expect):
    f = _draw_freqs(_logits(0.5, 0.1, 0.1, 0.3, 0, 0), [], step=0, min_len=3, ras=ras)
    assert torch.allclose(f, torch.tensor(expect), atol=0.012), f


@pytest.mark.parametrize(
    "ras,expect",
    [
        # p = (0.3, 0.2, 0.1 | eos 0.1 | 0.2, 0.1). current: all six ids; sorted (stable) 0, 1, 4, 2,
        # 3, 5; nucleus keeps 0, 1, 4, 2 (masses before 0, .3, .5, .7; before id 3 .8) -> (.375, .25, .125, 0, .25, 0),
        # and a draw of 4 stops the row.
        ("current", [0.375, 0.25, 0.125, 0, 0.25, 0]),
        # release: specials never drawn; softmax over (0.3, 0.2, 0.1, 0.1) = (3, 2, 1, 1)/7; nucleus
        # keeps 0, 1, 2 (before id 2: 5/7 < 0.75; before eos: 6/7) -> (0.5, 1/3, 1/6, 0, 0, 0)
        ("release", [0.5, 1 / 3, 1 / 6, 0, 0, 0]),
    ],
)
def test_special_rows_hand_worked(ras, expect):
    f = _draw_freqs(_logits(0.3, 0.2, 0.1, 0.1, 0.2, 0.1), [], step=5, min_len=0, ras=ras)
    assert torch.allclose(f, torch.tensor(expect), atol=0.012), f


# ------------------------------------------------------------------------------------------ SFT


_sft = run_tiny_sft


def test_sft_changes_every_parameter_and_learns(tmp_path):
    from rrpo.policy.io import load_policy

    out, run = _sft(tmp_path, "a", "train.steps=30", "train.bf16=false")
    after = load_policy(run)
    assert out["n_heldout"] == 4 and out["n_train"] == 12
    # compare with the initial weights: a 0-step policy from the same config and seed
    from rrpo.policy.sft import SFTConfig, build_policy, load_examples

    cfg = load_config(SFTConfig, None, sft_overrides(tmp_path / "data", tmp_path / "b"))
    tr, held, texts, shards, emos = load_examples(cfg.data)
    init = build_policy(cfg, texts, tr, shards.vocab_size, emos)
    unchanged = [k for k, v in init.state_dict().items() if torch.equal(v, after.state_dict()[k])]
    assert unchanged == []
    assert out["policy/loss"] < 2.0 and out["policy/acc"] > 0.4
    assert 0 <= out["policy/eval_acc"] <= 1 and out["policy/eval_loss"] > 0


def test_sft_resume_repeats_the_losses(tmp_path):
    _, full = _sft(tmp_path, "full", "train.steps=4", "data.bucket=2")
    _sft(tmp_path, "part", "train.steps=2", "data.bucket=2")
    _, part = _sft(tmp_path, "part", "train.steps=4", "data.bucket=2")  # resumes from step 2
    from rrpo.runs import RunDir

    a = [m["policy/loss"] for m in RunDir(full).read_metrics() if "policy/loss" in m]
    b = [m["policy/loss"] for m in RunDir(part).read_metrics() if "policy/loss" in m]
    assert len(a) == 4 and a == b


def test_sft_gradient_accumulation_equivalence(tmp_path):
    """Equal-length utterances: one micro-batch of 4 == two micro-batches of 2 (mean of means).

    Compared after one AdamW step of lr 3e-3: Adam moves each weight by about lr, so a wrong
    accumulation shows as differences ~1e-3; float rounding of near-zero gradients stays < 2e-5."""
    from rrpo.policy.io import load_policy
    from rrpo.policy.sft import SFTConfig, run_sft

    folder = tmp_path / "fixed"
    make_corpus(folder, fixed_length=6, texts=["天气好", "走吧们"])  # equal text lengths too
    common = [
        "train.steps=1",
        "train.bf16=false",
        "data.heldout=[]",
        "data.heldout_fraction=0",
        "train.clip_grad_norm=0",
    ]
    run_sft(load_config(SFTConfig, None, sft_overrides(folder, tmp_path / "one") + common + ["train.batch_size=4"]))
    run_sft(
        load_config(
            SFTConfig,
            None,
            sft_overrides(folder, tmp_path / "two") + common + ["train.batch_size=2", "train.grad_accum=2"],
        )
    )
    a, b = load_policy(tmp_path / "one").state_dict(), load_policy(tmp_path / "two").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-5)


# ------------------------------------------------------------------------------------------ checkpoints


def test_policy_folder_round_trip(tmp_path):
    from rrpo.policy.io import load_policy, save_policy

    pol = small_policy().eval()
    save_policy(pol, tmp_path / "p")
    back = load_policy(tmp_path / "p")
    pr = prompts_of(pol, 2)
    sp, sl = torch.randint(0, 20, (2, 5)), torch.tensor([5, 3])
    with torch.no_grad():
        assert torch.equal(pol(pr, sp, sl), back(pr, sp, sl))
    assert back.emotions == ["angry", "happy"] and back.speakers == ["s1", "s2"]


class _Qwen2Encoder(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers import Qwen2ForCausalLM

        self.model = Qwen2ForCausalLM(config)


class _CosyVoice2LLM(torch.nn.Module):
    """The module tree of CosyVoice2's Qwen2LM (parameter names and shapes only), tiny sizes."""

    def __init__(self, config, speech_token_size):
        super().__init__()
        d = config.hidden_size
        self.llm_embedding = torch.nn.Embedding(2, d)
        self.llm = _Qwen2Encoder(config)
        self.llm_decoder = torch.nn.Linear(d, speech_token_size + 3)
        self.speech_embedding = torch.nn.Embedding(speech_token_size + 3, d)


def make_cosyvoice2_dir(folder, drop=None, reshape=None, text_vocab_size=50):
    cfg = build_qwen_config(32, 2, 4, 2, 64, text_vocab_size=text_vocab_size)
    torch.manual_seed(1)
    m = _CosyVoice2LLM(cfg, 30)
    folder.mkdir(parents=True)
    (folder / "CosyVoice-BlankEN").mkdir()
    cfg.to_json_file(folder / "CosyVoice-BlankEN" / "config.json")
    (folder / "flow.pt").write_bytes(b"flow")
    sd = dict(m.state_dict())
    if drop:
        sd.pop(drop)
    if reshape:
        sd[reshape] = sd[reshape][:-1]
    torch.save(sd, folder / "llm.pt")
    return folder


def test_cosyvoice2_load_forward_save_reload(tmp_path):
    from rrpo.policy.io import load_cosyvoice2, save_cosyvoice2

    src = make_cosyvoice2_dir(tmp_path / "cv2")
    pol = load_cosyvoice2(src, text_tokenizer=False)
    assert pol.speech_vocab_size == 30 and pol.eos_id == 30
    pr = Prompts(torch.tensor([[3, 4, 5, 0], [7, 8, 9, 10]]), torch.tensor([3, 4]), torch.tensor([2, 3]))
    sp, sl = torch.randint(0, 30, (2, 6)), torch.tensor([6, 4])
    with torch.no_grad():
        y1 = pol(pr, sp, sl)
    save_cosyvoice2(pol, tmp_path / "out")
    a = torch.load(src / "llm.pt", weights_only=True)
    b = torch.load(tmp_path / "out" / "llm.pt", weights_only=True)
    assert list(a) == list(b) and "llm.model.lm_head.weight" in b
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert (tmp_path / "out" / "flow.pt").read_bytes() == b"flow"
    assert (tmp_path / "out" / "CosyVoice-BlankEN" / "config.json").exists()
    again = load_cosyvoice2(tmp_path / "out", text_tokenizer=False)
    with torch.no_grad():
        assert torch.equal(again(pr, sp, sl), y1)
    # and the reference module, loaded from the written file, gives the same head as ours
    ref = _CosyVoice2LLM(pol.qwen_config, 30)
    ref.load_state_dict(b)
    assert torch.equal(ref.llm_decoder.weight, pol.llm_decoder.weight)


@pytest.mark.parametrize(
    "drop,reshape,msg",
    [
        ("llm.model.model.layers.1.self_attn.k_proj.bias", None, "lacks 1 tensor"),
        (None, "speech_embedding.weight", "tensor 'speech_embedding.weight' has shape"),
    ],
)
def test_cosyvoice2_bad_checkpoint(tmp_path, drop, reshape, msg):
    from rrpo.policy.io import load_cosyvoice2

    src = make_cosyvoice2_dir(tmp_path / "cv2", drop=drop, reshape=reshape)
    with pytest.raises(RrpoError, match=msg):
        load_cosyvoice2(src, text_tokenizer=False)


def test_generation_type_is_what_diffro_reads():
    pol = small_policy()
    g = generate(pol, prompts_of(pol, 2), SamplingConfig(max_ratio=3), seeds=0)
    assert isinstance(g, Generation)
    assert g.ids.dtype == torch.long and g.noise.shape == (2, g.ids.shape[1] + 1, pol.n_out)


def test_bucketed_batches_cover_an_epoch_and_cut_padding():
    """12 examples of lengths 0..11, batch 3, bucket 2 -> groups of 6 sorted by length: every
    example once per epoch, each batch's lengths within one sorted group, reproducible by k."""
    from rrpo.policy.sft import BucketedBatches

    lengths = list(range(12))
    b = BucketedBatches(lengths, 3, 2, collate=lambda idx: idx, seed=1)
    epoch = [b(k) for k in range(b.per_epoch)]
    assert b.per_epoch == 4 and sorted(i for batch in epoch for i in batch) == lengths
    assert all(batch == sorted(batch, key=lengths.__getitem__) for batch in epoch)
    again = BucketedBatches(lengths, 3, 2, collate=lambda idx: idx, seed=1)
    assert [again(k) for k in (5, 0, 3)] == [b(5), b(0), b(3)]
    assert [b(k) for k in range(4, 8)] != epoch  # a new epoch reshuffles


def write_tiny_qwen_tokenizer(folder):
    """A byte-level BPE tokenizer of 300 ids saved the way Qwen's is (tokenizer.json + config)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS + list(INSTRUCTIONS["zh"].values()), trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)


def test_cosyvoice2_with_qwen_tokenizer_generates(tmp_path):
    """The Qwen tokenizer of the directory gets CosyVoice2's 19 special tokens (17 new here, in
    order after the 300 base ids), <|endofprompt|> is one id, and prompts go through end to end."""
    from rrpo.policy.io import load_cosyvoice2

    src = make_cosyvoice2_dir(tmp_path / "cv2", text_vocab_size=320)
    write_tiny_qwen_tokenizer(src / "CosyVoice-BlankEN")
    pol = load_cosyvoice2(src)
    assert pol.tokenizer.vocab_size == 317
    assert pol.tokenizer.encode(ENDOFPROMPT) == [300]  # first new special after im_start/im_end
    pr = pol.encode_prompts([TEXTS[0]], ["sad"], "zh")  # no emotion list: every emotion has an instruction
    g = generate(pol, pr, SamplingConfig(max_ratio=2), seeds=0)
    assert int(g.lens[0]) <= 2 * int(pr.content_lens[0])


def test_sft_on_several_manifests_then_fine_tune_from_it(tmp_path):
    """data.manifests/data.tokens read several corpora as one (each id from its own shards): the
    examples equal the concatenation's; a policy pre-trained on them is fine-tuned by model.init
    (the pre-training stage of `rrpo experiment`). Mismatches are one-line errors."""
    from rrpo.policy.io import load_policy
    from rrpo.policy.sft import SFTConfig, load_examples, run_sft

    ma, ta = make_corpus(tmp_path / "a", texts=TEXTS[:2], prefix="a_")
    mb, tb = make_corpus(tmp_path / "b", texts=TEXTS[2:], prefix="b_")
    two = load_config(
        SFTConfig, None, [f"data.manifests=[{ma}, {mb}]", f"data.tokens=[{ta}, {tb}]", "data.heldout_fraction=0"]
    ).data
    tr, held, texts, shards, emos = load_examples(two)
    assert len(tr) == len(TEXTS) * 2 * 2 and held == [] and emos == ["angry", "happy"]
    assert sorted(texts) == sorted(t for t in TEXTS for _ in range(4))
    for e in tr:  # every example carries its own corpus' tokens
        spk, emo = e.speaker, e.emotion
        assert e.tokens.tolist() == tokens_for(e.text, emo, spk).tolist()
    pre = ["data.manifest=", "data.shards=", f"data.manifests=[{ma}, {mb}]", f"data.tokens=[{ta}, {tb}]"]
    run_sft(load_config(SFTConfig, None, sft_overrides(tmp_path / "a", tmp_path / "pre", steps=3) + pre))
    out = run_sft(
        load_config(
            SFTConfig,
            None,
            sft_overrides(tmp_path / "a", tmp_path / "ft", steps=2)
            + [f"model.init={tmp_path / 'pre'}", f"data.heldout=[{TEXTS[1]}]"],
        )
    )
    assert out["n_train"] == 4 and load_policy(tmp_path / "ft").speech_vocab_size == VOCAB
    with pytest.raises(ConfigError, match="data.tokens"):
        load_config(SFTConfig, None, [f"data.manifests=[{ma}, {mb}]", f"data.tokens=[{ta}]"])
    with pytest.raises(ConfigError, match="data.manifests"):
        load_config(SFTConfig, None, [f"data.manifest={ma}", f"data.manifests=[{mb}]", f"data.tokens=[{tb}]"])
    with pytest.raises(RrpoError, match="also in an earlier manifest"):
        load_examples(load_config(SFTConfig, None, [f"data.manifests=[{ma}, {ma}]", f"data.tokens=[{ta}, {ta}]"]).data)
    mc, tc = make_corpus(tmp_path / "c", texts=TEXTS[:1], prefix="c_", vocab=VOCAB + 1)
    with pytest.raises(RrpoError, match="one codec"):
        load_examples(load_config(SFTConfig, None, [f"data.manifests=[{ma}, {mc}]", f"data.tokens=[{ta}, {tc}]"]).data)
