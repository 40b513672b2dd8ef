"""Classifier-free guidance on the emotion instruction: the unconditional prompt, the logit
combination, guided sampling and its replay, emotion dropout in SFT (determinism and resume)."""

from __future__ import annotations

import pytest
import torch

from rrpo.errors import ConfigError, RrpoError
from rrpo.policy.generate import (
    check_guidance,
    combine_guidance,
    generate,
    guided_logits,
    replay_logits,
    replay_mask,
)
from rrpo.policy.model import Prompts
from rrpo.policy.settings import SamplingConfig

from tests.unit.policy_fixtures import TEXTS, run_tiny_sft
from tests.unit.test_policy import prompts_of, small_policy


def guided_policy(seed=0):
    """The small test policy, marked as having learnt the unconditional prompt."""
    pol = small_policy(seed=seed)
    pol.info["emotion_dropout"] = 0.1
    return pol


# ------------------------------------------------------------------------------------ the pieces


def test_combine_guidance_worked_by_hand():
    """cond (2, 0), uncond (1, 1): w 3 -> 1 + 3·(1, -1) = (4, -2); w 0 -> uncond; w 1 -> cond
    itself (the very tensor, so no rounding); w 0.5 -> (1.5, 0.5)."""
    c, u = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert combine_guidance(c, u, 3.0).tolist() == [4.0, -2.0]
    assert combine_guidance(c, u, 0.0).tolist() == [1.0, 1.0]
    assert combine_guidance(c, u, 0.5).tolist() == [1.5, 0.5]
    assert combine_guidance(c, u, 1.0) is c


def test_unconditional_prompt_worked_example():
    """Row 0: ids [7, 8, 1, 3, 4] (instruction 7 8, <|endofprompt|> 1, text 3 4; content 2) -> [3, 4].
    Row 1: [9, 1, 5] (content 1), not dropped, stays [9, 1, 5]. Padding follows the new lengths."""
    p = Prompts(
        torch.tensor([[7, 8, 1, 3, 4], [9, 1, 5, 0, 0]]),
        torch.tensor([5, 3]),
        torch.tensor([2, 1]),
        torch.tensor([0, 1]),
    )
    one = p.unconditional(torch.tensor([True, False]))
    assert one.text_ids.tolist() == [[3, 4, 0], [9, 1, 5]]
    assert one.text_lens.tolist() == [2, 3] and one.content_lens.tolist() == [2, 1]
    assert one.speaker_ids.tolist() == [0, 1]
    both = p.unconditional()
    assert both.text_ids.tolist() == [[3, 4], [5, 0]] and both.text_lens.tolist() == [2, 1]
    cat = Prompts.cat([p, both])
    assert cat.text_ids.shape == (4, 5) and cat.text_lens.tolist() == [5, 3, 2, 1]
    assert cat.text_ids[2].tolist() == [3, 4, 0, 0, 0]


def test_unconditional_prompt_is_the_text_alone():
    """Encoding a text with an instruction and dropping it equals the text's own ids."""
    pol = guided_policy()
    pr = pol.encode_prompts([TEXTS[0]], ["angry"], "zh", ["s1"])
    un = pr.unconditional()
    assert un.text_ids[0].tolist() == pol.tokenizer.encode(TEXTS[0])
    assert int(un.content_lens[0]) == len(TEXTS[0])


def test_guidance_needs_a_policy_that_learnt_the_unconditional_prompt():
    pol = small_policy()
    check_guidance(pol, 1.0)  # plain sampling: always fine
    with pytest.raises(RrpoError, match="drop_emotion"):
        generate(pol, prompts_of(pol, 2), SamplingConfig(guidance=2.0), seeds=0)
    with pytest.raises(ConfigError):
        SamplingConfig(guidance=-1.0)


# ------------------------------------------------------------------------------------ sampling


def test_guidance_one_is_todays_sampler_exactly():
    """w = 1 runs no unconditional pass: ids, lengths and noise equal the default sampler's bit for
    bit, for both upstream samplers, and the generation records w = 1."""
    pol = guided_policy()
    pr = prompts_of(pol, 3)
    for ras in ("current", "release"):
        a = generate(pol, pr, SamplingConfig(min_ratio=1, max_ratio=6, ras=ras), seeds=[4, 5, 6])
        b = generate(pol, pr, SamplingConfig(min_ratio=1, max_ratio=6, ras=ras, guidance=1.0), seeds=[4, 5, 6])
        assert torch.equal(a.ids, b.ids) and torch.equal(a.lens, b.lens) and torch.equal(a.noise, b.noise)
        assert b.guidance == 1.0
    with torch.no_grad():
        torch.testing.assert_close(guided_logits(pol, pr, a.ids, a.lens, 1.0), pol(pr, a.ids, a.lens), rtol=0, atol=0)


#: What the sampler drew for small_policy(), prompts_of(pol, 3), min_ratio 1, max_ratio 6, seeds 4, 5, 6,
#: recorded with the code before guidance existed (the parent of the commit that added it).
BEFORE_GUIDANCE = {
    "current": (
        [
            [6, 11, 5, 19, 8, 9, 4, 10, 14, 16, 0, 0, 0],
            [9, 0, 6, 10, 12, 7, 3, 1, 0, 0, 0, 0, 0],
            [2, 6, 4, 9, 12, 8, 10, 18, 17, 0, 5, 19, 6],
        ],
        [10, 8, 13],
    ),
    "release": (
        [
            [6, 10, 14, 5, 11, 8, 6, 17, 4, 15, 19] + [0] * 13,
            [9, 17, 14, 15, 1, 19, 18, 16, 5, 2, 4, 13, 17, 6, 10, 0, 12] + [0] * 7,
            [2, 0, 11, 12, 5, 19, 6, 8, 7, 9, 17, 2, 14, 17, 4, 18, 19, 6, 8, 11, 11, 5, 3, 19],
        ],
        [11, 17, 24],
    ),
}


@pytest.mark.parametrize("ras", ["current", "release"])
def test_guidance_one_draws_what_the_sampler_drew_before_guidance(ras):
    pol = guided_policy()
    g = generate(
        pol, prompts_of(pol, 3), SamplingConfig(min_ratio=1, max_ratio=6, ras=ras, guidance=1.0), seeds=[4, 5, 6]
    )
    ids, lens = BEFORE_GUIDANCE[ras]
    assert g.ids.tolist() == ids and g.lens.tolist() == lens


def test_guided_logits_are_the_combination_of_two_plain_forwards():
    """guided_logits (one batch of 2B) == uncond + w (cond - uncond) with each side run on its own."""
    pol = guided_policy().eval()
    pr = prompts_of(pol, 3)
    speech, lens = torch.randint(0, 20, (3, 5)), torch.tensor([5, 2, 4])
    with torch.no_grad():
        c = pol(pr, speech, lens)
        u = pol(pr.unconditional(), speech, lens)
        g = guided_logits(pol, pr, speech, lens, 2.5)
    for i in range(3):
        n = int(lens[i]) + 1
        torch.testing.assert_close(g[i, :n], u[i, :n] + 2.5 * (c[i, :n] - u[i, :n]), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(g[:, :2], c[:, :2], atol=1e-3)  # the instruction matters, so guidance changes the logits


def test_guidance_zero_samples_the_unconditional_prompt():
    """w = 0 is the unconditional model: the same ids as plain sampling of the instruction-less prompts."""
    pol = guided_policy()
    pr = prompts_of(pol, 3)
    cfg = dict(min_ratio=1, max_ratio=6)
    g0 = generate(pol, pr, SamplingConfig(**cfg, guidance=0.0), seeds=[1, 2, 3])
    un = generate(pol, pr.unconditional(), SamplingConfig(**cfg), seeds=[1, 2, 3])
    assert torch.equal(g0.ids, un.ids) and torch.equal(g0.lens, un.lens)


def test_guided_replay_gives_the_sampled_ids_and_batches_equal_rows():
    """The DiffRO contract under guidance: argmax(replayed guided logits + noise) == drawn ids; a
    batch equals one-by-one generation; the cache equals no cache."""
    pol = guided_policy()
    pr = prompts_of(pol, 3)
    cfg = SamplingConfig(min_ratio=1, max_ratio=5, temperature=0.7, guidance=3.0)
    g = generate(pol, pr, cfg, seeds=[7, 8, 9])
    assert g.guidance == 3.0
    logits = replay_logits(pol, g)
    m = replay_mask(g)
    drawn = pol.targets(g.ids, g.lens)
    ended = g.ended.nonzero().flatten()
    drawn[ended, g.lens[ended]] = g.stop[ended]
    assert logits.requires_grad
    assert torch.equal((logits.detach() + g.noise).argmax(-1)[m], drawn[m])
    for i, s in enumerate([7, 8, 9]):
        one = generate(pol, pr.select([i]), cfg, seeds=[s])
        assert torch.equal(one.tokens(0), g.tokens(i))
    nc = generate(
        pol,
        pr,
        SamplingConfig(min_ratio=1, max_ratio=5, temperature=0.7, guidance=3.0, use_cache=False),
        seeds=[7, 8, 9],
    )
    assert torch.equal(nc.ids, g.ids)
    # the random policy's instruction changes its logits only a little: a large scale shows it
    plain = generate(pol, pr, SamplingConfig(min_ratio=1, max_ratio=5, temperature=0.7), seeds=[7, 8, 9])
    strong = generate(
        pol, pr, SamplingConfig(min_ratio=1, max_ratio=5, temperature=0.7, guidance=200.0), seeds=[7, 8, 9]
    )
    assert not torch.equal(plain.ids, strong.ids)


def test_diffro_step_replays_a_guided_sample():
    """The optimiser's sample-and-replay scores the guided policy: its logits + noise give the ids."""
    from rrpo.optimize.objectives import StepContext, _sample_and_replay
    from rrpo.policy.generate import guided_logits

    pol, ref = guided_policy(), guided_policy(seed=7)  # the reference differs from the policy
    pr = prompts_of(pol, 2)
    ctx = StepContext(pol, ref, sampling=SamplingConfig(min_ratio=1, max_ratio=5, guidance=2.0))
    gen, logits, ref_logits, ids, lens = _sample_and_replay(
        ctx, {"prompts": pr, "seeds": [3, 4], "emotions": ["angry", "happy"]}, True
    )
    T = ids.shape[1]
    mask = torch.arange(T)[None] < lens[:, None]
    assert torch.equal((logits.detach() + gen.noise[:, :T]).argmax(-1)[mask], ids[mask])
    # the reference's logits are the reference's own guided logits on the same ids, not the policy's
    with torch.no_grad():
        want = guided_logits(ref, gen.prompts, gen.ids, gen.lens, 2.0)[:, :T]
    torch.testing.assert_close(ref_logits[mask], want[mask], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ref_logits[mask], logits.detach()[mask], atol=1e-3)


# ------------------------------------------------------------------------------------ SFT


def _batches(n=12, b=4):
    """A stand-in for SFT's batch maker: micro-batch k holds rows with one instruction id (9)."""
    from rrpo.policy.sft import emotion_dropout  # noqa: F401

    def get(k):
        ids = torch.tensor([[9, 1, 3 + r, 4] for r in range(b)])
        return {
            "prompts": Prompts(ids, torch.full((b,), 4), torch.full((b,), 2), None),
            "speech": torch.zeros(b, 2, dtype=torch.long),
            "speech_lens": torch.full((b,), 2),
        }

    return get


def test_emotion_dropout_is_deterministic_under_a_seed():
    """Micro-batch k drops the same rows every time for one seed (resume-safe), other rows for
    another seed, about p of all rows, and a dropped row reads the text alone."""
    from rrpo.policy.sft import emotion_dropout

    a, a2, b = (
        emotion_dropout(_batches(), 0.3, 0),
        emotion_dropout(_batches(), 0.3, 0),
        emotion_dropout(_batches(), 0.3, 1),
    )
    rows = lambda f, k: f(k).get("dropped", torch.zeros(4, dtype=torch.bool))  # noqa: E731
    pat_a = torch.stack([rows(a, k) for k in range(200)])
    assert torch.equal(pat_a, torch.stack([rows(a2, k) for k in reversed(range(200))]).flip(0))
    assert not torch.equal(pat_a, torch.stack([rows(b, k) for k in range(200)]))
    assert 0.25 < pat_a.float().mean() < 0.35  # 800 rows, p = 0.3: sd 0.016
    k = int(pat_a.any(1).nonzero()[0])
    batch = a(k)
    for r in range(4):
        want = [3 + r, 4] if batch["dropped"][r] else [9, 1, 3 + r, 4]
        assert batch["prompts"].text_ids[r, : int(batch["prompts"].text_lens[r])].tolist() == want
    assert emotion_dropout(_batches(), 0.0, 0)(k).get("dropped") is None  # p = 0: the batches as they were


_sft = run_tiny_sft


def test_sft_with_emotion_dropout_resumes_exactly_and_enables_guidance(tmp_path):
    """A 4-step SFT with dropout equals 2 steps + a resumed 2 (same losses); its losses differ from
    SFT without dropout (rows were dropped); the policy records the dropout and samples guided."""
    from rrpo.policy.io import load_policy
    from rrpo.runs import RunDir

    drop = "data.drop_emotion=0.5"
    _, full = _sft(tmp_path, "full", "train.steps=4", "data.bucket=2", drop)
    _sft(tmp_path, "part", "train.steps=2", "data.bucket=2", drop)
    _, part = _sft(tmp_path, "part", "train.steps=4", "data.bucket=2", drop)  # resumes from step 2
    _, plain = _sft(tmp_path, "plain", "train.steps=4", "data.bucket=2")
    loss = lambda run: [m["policy/loss"] for m in RunDir(run).read_metrics() if "policy/loss" in m]  # noqa: E731
    assert len(loss(full)) == 4 and loss(full) == loss(part)
    assert loss(full) != loss(plain)
    pol = load_policy(full)
    assert pol.info["emotion_dropout"] == 0.5 and pol.knows_unconditional
    assert not load_policy(plain).knows_unconditional
    g = generate(pol, prompts_of(pol, 2), SamplingConfig(min_ratio=1, max_ratio=3, guidance=2.0), seeds=0)
    assert g.guidance == 2.0 and int(g.lens.min()) >= 1
    with pytest.raises(ConfigError):
        _sft(tmp_path, "bad", "data.drop_emotion=1.0")
