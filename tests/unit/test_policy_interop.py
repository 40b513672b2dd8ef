"""Policy folders across transformers versions, checkpoints of CosyVoice2 directories, and the
HF/GRPO layout (speech id k -> offset + k)."""

from __future__ import annotations

import json

import pytest
import torch

from rrpo.errors import RrpoError
from rrpo.policy.model import rope_base

from tests.unit.test_policy import make_cosyvoice2_dir, prompts_of, small_policy


class Qwen2Config4x:
    """transformers 4.x's reading of a Qwen2 config, for what matters here: ``rope_theta`` (default
    10000) is the RoPE base and an unknown ``rope_parameters`` is kept as an inert attribute."""

    def __init__(self, rope_theta: float = 10000.0, **kwargs):
        self.rope_theta = rope_theta
        for k, v in kwargs.items():
            setattr(self, k, v)


def test_saved_policy_writes_the_rope_base_in_both_spellings(tmp_path, monkeypatch):
    """A policy with RoPE base 1e6 saved here: policy.json holds rope_theta = 1e6 (what 4.x reads)
    and rope_parameters.rope_theta = 1e6 (what 5.x reads); reading the saved dict back gives 1e6
    under the installed transformers and under a 4.x-style config class. The dict as transformers
    5.x alone writes it (rope_parameters only) would read 10000 under 4.x: that is the bug, and the
    reader fixes it by passing both spellings."""
    import rrpo.policy.model as m
    from rrpo.policy.io import load_policy, save_policy

    pol = small_policy()
    qd = m.qwen2_config_dict(pol.qwen_config)
    qd.update(rope_theta=1e6, rope_parameters={"rope_theta": 1e6, "rope_type": "default"})
    pol2 = m.TTSPolicy(m.qwen2_config(qd), pol.speech_vocab_size, n_speakers=2, tokenizer=pol.tokenizer, info=pol.info)
    assert rope_base(pol2.qwen_config) == 1e6
    save_policy(pol2, tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "policy.json").read_text())["qwen"]
    assert saved["rope_theta"] == 1e6 and saved["rope_parameters"]["rope_theta"] == 1e6
    assert rope_base(load_policy(tmp_path / "p").qwen_config) == 1e6
    # 5.x-only spelling read by a 4.x-style class without rrpo's fix: 10000 (silently wrong)
    only5 = {k: v for k, v in saved.items() if k != "rope_theta"}
    assert Qwen2Config4x(**only5).rope_theta == 10000.0
    # through rrpo's reader, both spellings alone give 1e6 under "4.x" and under the installed version
    monkeypatch.setattr(m, "_qwen2_config_class", lambda: Qwen2Config4x)
    only4 = {k: v for k, v in saved.items() if k != "rope_parameters"}
    for d in (saved, only5, only4):
        assert rope_base(m.qwen2_config(dict(d))) == 1e6
    monkeypatch.undo()
    for d in (saved, only5, only4):
        assert rope_base(m.qwen2_config(dict(d))) == 1e6


def test_conflicting_rope_bases_are_refused():
    from rrpo.policy.model import qwen2_config, qwen2_config_dict

    d = qwen2_config_dict(small_policy().qwen_config)
    d["rope_theta"] = 5e5
    d["rope_parameters"] = {"rope_theta": 1e6, "rope_type": "default"}
    with pytest.raises(RrpoError, match="two RoPE bases"):
        qwen2_config(d, "x/policy.json")


def test_a_version_that_reads_another_base_is_refused(monkeypatch):
    """A config class that ignores both spellings (reads 10000 whatever is written) is refused."""
    import rrpo.policy.model as m

    class Deaf(Qwen2Config4x):
        def __init__(self, rope_theta=10000.0, **kw):
            super().__init__(**kw)
            self.rope_theta = 10000.0

    d = m.qwen2_config_dict(small_policy().qwen_config)
    d.update(rope_theta=1e6, rope_parameters={"rope_theta": 1e6, "rope_type": "default"})
    monkeypatch.setattr(m, "_qwen2_config_class", lambda: Deaf)
    with pytest.raises(RrpoError, match="reads RoPE base 10000, the config says 1e\\+06"):
        m.qwen2_config(d)


def test_load_policy_honours_checkpoint_for_a_cosyvoice2_dir(tmp_path):
    """load_policy(cv2_dir, checkpoint=step folder) takes the checkpoint's weights (it ignored them)."""
    from rrpo.policy.io import load_policy
    from rrpo.train.loop import save_weights

    src = make_cosyvoice2_dir(tmp_path / "cv2")
    pol = load_policy(src)
    with torch.no_grad():
        pol.llm_decoder.bias.add_(1.0)
    (tmp_path / "ck" / "step_3").mkdir(parents=True)
    save_weights(pol, tmp_path / "ck" / "step_3" / "model.safetensors")
    again = load_policy(src, checkpoint=tmp_path / "ck" / "step_3")
    assert torch.equal(again.llm_decoder.bias, pol.llm_decoder.bias)
    assert not torch.equal(load_policy(src).llm_decoder.bias, pol.llm_decoder.bias)
    torch.save({k: v for k, v in pol.state_dict().items()}, tmp_path / "other.pt")
    assert torch.equal(load_policy(src, checkpoint=tmp_path / "other.pt").llm_decoder.bias, pol.llm_decoder.bias)
    with pytest.raises(RrpoError, match="checkpoint not found"):
        load_policy(src, checkpoint=tmp_path / "nope")


# ------------------------------------------------------------------------------ HF / GRPO layout


def test_hf_token_ids_worked_example():
    """CosyVoice2-0.5B: offset 151663, S 6561 -> eos 158224..158226, sos 158227, task_id 158228,
    158229 ids padded to 158336 (= 1237 x 128)."""
    from rrpo.policy.hf import hf_token_ids

    ids = hf_token_ids(151663, 6561)
    assert ids == {
        "speech0": 151663,
        "eos": [158224, 158225, 158226],
        "sos": 158227,
        "task_id": 158228,
        "vocab": 158336,
    }


def test_hf_layout_round_trip_and_plain_transformers_reads_it(tmp_path):
    """Tiny policy (char tokenizer of V_t ids, S = 20): export, then

    * the file follows the token map: embed row offset+k = speech_embedding row k, rows of
      sos/task_id = llm_embedding, lm_head rows = llm_decoder, bias -inf elsewhere;
    * a plain ``Qwen2ForCausalLM.from_pretrained`` on the folder, fed the ids
      [sos, text..., task_id, offset+s_1, ...], gives our teacher-forced logits as
      ``logits[..., offset:offset+S+3] + bias`` (it drops the bias, which we add back);
    * import gives every tensor back bit for bit and the same forward."""
    from transformers import Qwen2ForCausalLM

    from rrpo.policy.hf import hf_token_ids, load_hf_layout, save_hf_layout
    from rrpo.policy.io import load_policy

    pol = small_policy(speakers=())
    with torch.no_grad():
        pol.llm_decoder.bias.normal_()
    out = save_hf_layout(pol, tmp_path / "hf")
    off, s = pol.tokenizer.vocab_size, pol.speech_vocab_size
    ids = hf_token_ids(off, s)
    from safetensors.torch import load_file

    t = load_file(str(out / "model.safetensors"))
    assert t["model.embed_tokens.weight"].shape[0] == ids["vocab"] and ids["vocab"] % 128 == 0
    assert torch.equal(t["model.embed_tokens.weight"][off + 7], pol.speech_embedding.weight[7])
    assert torch.equal(t["model.embed_tokens.weight"][ids["sos"]], pol.llm_embedding.weight[0])
    assert torch.equal(t["model.embed_tokens.weight"][ids["task_id"]], pol.llm_embedding.weight[1])
    assert torch.equal(t["lm_head.weight"][ids["eos"][0]], pol.llm_decoder.weight[s])
    assert torch.isinf(t["lm_head.bias"][:off]).all() and torch.isinf(t["lm_head.bias"][ids["sos"] :]).all()
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == ids["eos"]

    pr = prompts_of(pol, 2)
    sp, sl = torch.randint(0, s, (2, 5)), torch.tensor([5, 3])
    with torch.no_grad():
        ours = pol(pr, sp, sl)
    hf = Qwen2ForCausalLM.from_pretrained(str(out), attn_implementation="eager").eval()
    bias = t["lm_head.bias"][off : off + s + 3]
    for b in range(2):
        n, m = int(pr.text_lens[b]), int(sl[b])
        seq = [ids["sos"]] + pr.text_ids[b, :n].tolist() + [ids["task_id"]] + (off + sp[b, :m]).tolist()
        with torch.no_grad():
            lg = hf(torch.tensor([seq])).logits[0, n + 1 :, off : off + s + 3] + bias  # task_id on
        assert torch.allclose(lg, ours[b, : m + 1], atol=1e-4)

    back = load_policy(out)
    a, c = pol.state_dict(), back.state_dict()
    assert set(a) == set(c) and all(torch.equal(a[k], c[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(back(pr, sp, sl), ours)
    assert back.emotions == pol.emotions and back.tokenizer.itos == pol.tokenizer.itos
    # a veRL/TRL folder without rrpo's extras: the offset must be given; the speech rows come back
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("rrpo")
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "rrpo_extra.safetensors").unlink()
    with pytest.raises(RrpoError, match="cannot find the speech offset"):
        load_hf_layout(out)
    bare = load_hf_layout(out, speech_offset=off, speech_vocab_size=s)
    assert torch.equal(bare.speech_embedding.weight, pol.speech_embedding.weight)
    assert torch.equal(bare.llm_decoder.bias, pol.llm_decoder.bias)
    # CosyVoice2 llm.pt -> HF -> llm.pt: the same tensors (exported back through rrpo)
    from rrpo.policy.io import load_cosyvoice2, save_cosyvoice2

    cv = load_cosyvoice2(make_cosyvoice2_dir(tmp_path / "cv2"), text_tokenizer=False)
    save_hf_layout(cv, tmp_path / "cv_hf", offset=40)
    cv_back = load_policy(tmp_path / "cv_hf")
    cv_back.info["cosyvoice2"] = cv.info["cosyvoice2"]
    save_cosyvoice2(cv_back, tmp_path / "cv_out", copy_rest=False)
    x = torch.load(tmp_path / "cv2" / "llm.pt", weights_only=True)
    y = torch.load(tmp_path / "cv_out" / "llm.pt", weights_only=True)
    assert list(x) == list(y) and all(torch.equal(x[k], y[k]) for k in x)


def test_hf_export_cli(tmp_path, capsys):
    from rrpo.cli import main
    from rrpo.policy.io import save_policy

    save_policy(small_policy(speakers=()), tmp_path / "p")
    assert main(["policy", "export", f"policy={tmp_path / 'p'}", f"out={tmp_path / 'hf'}", "layout=hf"]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "text_tokenizer.json").exists()
    # a policy with a speaker table has no HF equivalent: one line
    save_policy(small_policy(), tmp_path / "q")
    assert main(["policy", "export", f"policy={tmp_path / 'q'}", f"out={tmp_path / 'hf2'}", "layout=hf"]) == 2
    assert "speaker table" in capsys.readouterr().err
