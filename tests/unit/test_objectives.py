"""The per-algorithm step objectives (``OBJECTIVES``) that the trainer and ``bench/optimize.py`` share:
each is generate → teacher-forced policy and reference → the algorithm's loss, with the budget."""

from __future__ import annotations

import copy
import typing

import pytest
import torch

from rrpo.optimize.objectives import OBJECTIVES, RewardTerm, StepContext, diffro_loss, grpo_loss, reinforce_loss
from rrpo.optimize.trainer import OptimizeConfig
from rrpo.policy.generate import generate
from rrpo.policy.model import tiny_policy
from rrpo.policy.settings import SamplingConfig
from rrpo.policy.text import ENDOFPROMPT, INSTRUCTIONS, CharTokenizer

EMOTIONS = ["angry", "happy"]
V = 12


def _ctx(group: int = 2) -> StepContext:
    tok = CharTokenizer.build(["今天好我们走"] + [INSTRUCTIONS["zh"][e] + ENDOFPROMPT for e in EMOTIONS])
    policy = tiny_policy(
        tok, V, hidden_size=32, layers=1, heads=4, kv_heads=2, intermediate_size=64, emotions=EMOTIONS, languages=["zh"]
    )
    ref = copy.deepcopy(policy).eval().requires_grad_(False)

    # a reward that reads the token distribution: mass on token 3 per position (mean over the valid length)
    def fn(y, lens, target):
        if y.dim() == 2:  # sampled ids
            y = torch.nn.functional.one_hot(y, V).float()
        mask = (torch.arange(y.shape[1])[None] < lens[:, None]).float()
        return (y[..., 3] * mask).sum(-1) / lens.clamp_min(1)

    terms = [RewardTerm("toy", fn, 2.0, V)]
    return StepContext(
        policy,
        ref,
        terms,
        SamplingConfig(min_ratio=1.0, max_ratio=2.0, ras_window=0),
        beta=0.1,
        tau=0.7,
        group=group,
        clip=0.2,
    )


def _batch(ctx: StepContext, n: int = 4) -> dict:
    texts, emotions = (["今天好", "我们走"] * n)[:n], (EMOTIONS * n)[:n]
    return {
        "prompts": ctx.policy.encode_prompts(texts, emotions, "zh"),
        "emotions": emotions,
        "seeds": list(range(100, 100 + n)),
    }


def test_registry_covers_every_algo_of_the_config():
    algos = set(typing.get_args(typing.get_type_hints(OptimizeConfig)["algo"]))
    assert set(OBJECTIVES) == algos == {"diffro", "grpo", "reinforce", "sft"}


def _replay(ctx, batch, noise):
    gen = generate(ctx.policy, batch["prompts"], ctx.sampling, batch["seeds"], return_noise=noise)
    T = gen.ids.shape[1]
    logits = ctx.policy(gen.prompts, gen.ids, gen.lens)[:, :T]
    ref_logits = ctx.ref(gen.prompts, gen.ids, gen.lens)[:, :T]
    return gen, logits, ref_logits


@pytest.mark.parametrize("algo", ["diffro", "reinforce", "grpo"])
def test_step_is_the_algorithms_loss_on_its_own_samples(algo):
    """With the batch's sampling seeds the step draws the same samples as ``generate`` does here, and its
    loss and gradient are the algorithm's loss on them; the budget counts samples and speech tokens."""
    ctx = _ctx()
    batch = _batch(ctx)
    loss, m = OBJECTIVES[algo](ctx, batch)
    loss.backward()
    g_step = [p.grad.clone() for p in ctx.policy.parameters() if p.grad is not None]
    ctx.policy.zero_grad(set_to_none=True)

    gen, logits, ref_logits = _replay(ctx, batch, noise=algo == "diffro")
    emo = batch["emotions"]
    if algo == "diffro":
        want, _ = diffro_loss(
            logits,
            ref_logits,
            gen.ids,
            gen.lens,
            emo,
            ctx.terms,
            beta=0.1,
            tau=0.7,
            noise=gen.noise[:, : gen.ids.shape[1]],
        )
    else:
        reward = 2.0 * ctx.terms[0].fn(gen.ids, gen.lens, emo)
        if algo == "grpo":
            want, _ = grpo_loss(logits, ref_logits, gen.ids, gen.lens, emo, reward, 2, beta=0.1, clip=0.2)
        else:
            want, _ = reinforce_loss(logits, ref_logits, gen.ids, gen.lens, emo, reward, beta=0.1)
        assert m["reward/toy"] == pytest.approx(reward.mean().item() / 2.0)
    want.backward()
    g_want = [p.grad for p in ctx.policy.parameters() if p.grad is not None]
    assert loss.item() == pytest.approx(want.item(), abs=1e-6)
    assert len(g_step) == len(g_want) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_step, g_want))
    assert m["budget/samples"] == 4.0 and m["budget/tokens"] == float(gen.lens.sum())


def test_seeds_drawn_from_torch_when_the_batch_has_none():
    """The trainer's batches carry no seeds: they come from torch's generator, so a re-seeded step repeats."""
    ctx = _ctx()
    batch = _batch(ctx)
    del batch["seeds"]
    torch.manual_seed(5)
    a, _ = OBJECTIVES["diffro"](ctx, batch)
    torch.manual_seed(5)
    b, _ = OBJECTIVES["diffro"](ctx, batch)
    torch.manual_seed(6)
    c, _ = OBJECTIVES["diffro"](ctx, batch)
    assert a.item() == b.item()
    assert c.item() != a.item()  # the draw does come from torch's generator: another seed, other samples


def test_sft_step_is_the_token_loss():
    from rrpo.policy.sft import token_loss

    ctx = _ctx()
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    lens = torch.tensor([3, 4])
    batch = {
        "prompts": ctx.policy.encode_prompts(["今天好", "我们走"], EMOTIONS, "zh"),
        "speech": ids,
        "speech_lens": lens,
    }
    loss, m = OBJECTIVES["sft"](ctx, batch)
    assert loss.item() == pytest.approx(token_loss(ctx.policy, batch)[0].item())
    assert m == {"policy/loss": pytest.approx(loss.item()), "budget/samples": 2.0, "budget/tokens": 7.0}
