"""The HF / GRPO layout of a CosyVoice2 policy: one ``Qwen2ForCausalLM`` whose vocabulary is the text
vocabulary followed by the speech tokens, as CosyVoice's GRPO recipe (veRL) and TRL train it.

Token map (``O`` = the text tokenizer's size with CosyVoice2's special tokens, 151,663 for
CosyVoice2-0.5B; ``S`` = speech vocabulary, 6,561)::

    id O + k          speech token k (<|s_k|>), k < S        rows of speech_embedding / llm_decoder
    id O + S + j      <|eos1|>, <|eos2|>, <|eos3|> (j = 0,1,2)  rows S+j of both (eos and the specials)
    id O + S + 3      <|sos|>                                  llm_embedding row 0
    id O + S + 4      <|task_id|>                              llm_embedding row 1

The vocabulary is padded to a multiple of 128 (``O + S + 5`` = 158,229 -> 158,336). The input
embedding holds the text rows first (the Qwen rows ``[O, text vocab)``, unused reserved ids, are
overwritten by speech rows, as upstream does); ``lm_head`` is a biased linear layer of the full
vocabulary, zero weight and ``-inf`` bias outside the speech rows, so only speech ids and the three
stop ids can be drawn. ``generation_config.json`` stops on the three eos ids (top_k 25, top_p 0.8).

rrpo writes, beside the HF files, ``config.json["rrpo"]`` (offset, sizes, the policy's description)
and ``rrpo_extra.safetensors`` (the overwritten Qwen rows), so rrpo -> HF -> rrpo is exact. A folder
from veRL/TRL without them loads too: the offset comes from ``<|s_0|>`` in its tokenizer (or the
``speech_offset`` argument); the overwritten rows then keep the speech values (as upstream's
``huggingface_to_pretrained.py`` does; CosyVoice2's tokenizer never produces those ids). A plain
``transformers`` ``Qwen2ForCausalLM`` drops ``lm_head.bias`` on load (it has no bias); upstream's
converter back then assumes a zero bias; rrpo reads the bias where the file has it, else zero.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rrpo.errors import RrpoError
from rrpo.policy.model import N_SPECIAL, TTSPolicy, qwen2_config, qwen2_config_dict

PAD_MULTIPLE = 128
#: CosyVoice2-0.5B: Qwen2 text rows and the tokenizer size with CosyVoice2's special tokens
QWEN_TEXT_ROWS, COSYVOICE2_OFFSET = 151936, 151663
EXTRA = "rrpo_extra.safetensors"


def speech_offset(policy: TTSPolicy) -> int:
    """Id of speech token 0 in the HF vocabulary (the text tokenizer's size)."""
    if "hf_speech_offset" in policy.info:
        return int(policy.info["hf_speech_offset"])
    if policy.tokenizer is not None:
        return int(policy.tokenizer.vocab_size)
    if policy.qwen_config.vocab_size == QWEN_TEXT_ROWS:
        return COSYVOICE2_OFFSET
    raise RrpoError("cannot tell the text vocabulary size of this policy (no tokenizer); give speech_offset")


def hf_token_ids(offset: int, speech_vocab: int) -> dict:
    """The special ids of the layout. Example: offset 151663, S 6561 -> eos (158224, 158225, 158226),
    sos 158227, task_id 158228, vocab 158336."""
    n = offset + speech_vocab + N_SPECIAL + 2
    return {
        "speech0": offset,
        "eos": [offset + speech_vocab + j for j in range(N_SPECIAL)],
        "sos": offset + speech_vocab + N_SPECIAL,
        "task_id": offset + speech_vocab + N_SPECIAL + 1,
        "vocab": -(-n // PAD_MULTIPLE) * PAD_MULTIPLE,
    }


def save_hf_layout(
    policy: TTSPolicy, folder: str | os.PathLike, offset: int | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``policy`` as a HF ``Qwen2ForCausalLM`` folder in the GRPO layout (see module docstring)."""
    from safetensors.torch import save_file

    from rrpo.io import atomic_path, write_json

    if policy.speaker_embedding is not None:
        raise RrpoError("a policy with a speaker table has no HF-layout equivalent; train it without speakers")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = policy.speech_vocab_size
    offset = speech_offset(policy) if offset is None else int(offset)
    ids = hf_token_ids(offset, s)
    v = ids["vocab"]
    qwen = policy.llm.model.model
    emb = qwen.embed_tokens.weight.detach().cpu()
    d = emb.shape[1]
    text_rows = emb.shape[0]
    if offset > text_rows:
        raise RrpoError(f"speech offset {offset} is past the {text_rows} text embedding rows")
    dt = dtype or emb.dtype
    big = torch.zeros(v, d, dtype=emb.dtype)
    big[:text_rows] = emb
    overwritten = emb[offset : min(text_rows, offset + s + N_SPECIAL + 2)].clone()
    big[offset : offset + s + N_SPECIAL] = policy.speech_embedding.weight.detach().cpu()
    big[ids["sos"] : ids["sos"] + 2] = policy.llm_embedding.weight.detach().cpu()
    head_w = torch.zeros(v, d, dtype=emb.dtype)
    head_b = torch.full((v,), -float("inf"), dtype=emb.dtype)
    head_w[offset : offset + s + N_SPECIAL] = policy.llm_decoder.weight.detach().cpu()
    head_b[offset : offset + s + N_SPECIAL] = policy.llm_decoder.bias.detach().cpu()
    tensors = {f"model.{k}": t.detach().cpu() for k, t in qwen.state_dict().items() if k != "embed_tokens.weight"}
    tensors.update({"model.embed_tokens.weight": big, "lm_head.weight": head_w, "lm_head.bias": head_b})
    tensors = {k: t.to(dt).contiguous() for k, t in tensors.items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    with atomic_path(folder / EXTRA) as tmp:
        save_file({"text_rows": overwritten.to(dt).contiguous()}, str(tmp))
    cfg = qwen2_config_dict(policy.qwen_config)
    cfg.update(
        {
            "vocab_size": v,
            "tie_word_embeddings": False,
            "eos_token_id": ids["eos"][0],
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "torch_dtype": str(dt).replace("torch.", ""),
            "rrpo": {
                "speech_offset": offset,
                "speech_vocab_size": s,
                "text_vocab_size": text_rows,
                "tied_text_head": bool(policy.qwen_config.tie_word_embeddings),
                "info": {k: v_ for k, v_ in policy.info.items() if k != "cosyvoice2"},
            },
        }
    )
    cfg.pop("_attn_implementation_autoset", None)
    write_json(folder / "config.json", cfg)
    write_json(
        folder / "generation_config.json",
        {"eos_token_id": ids["eos"], "temperature": 1.0, "top_p": 0.8, "top_k": 25, "do_sample": True},
    )
    _save_tokenizer(policy, folder, offset, s)
    return folder


def _save_tokenizer(policy: TTSPolicy, folder: Path, offset: int, s: int) -> None:
    from rrpo.policy.text import QwenTextTokenizer

    tok = policy.tokenizer
    if isinstance(tok, QwenTextTokenizer):
        import copy

        t = copy.deepcopy(tok.tok)
        added = t.add_tokens(
            [f"<|s_{i}|>" for i in range(s)] + ["<|eos1|>", "<|eos2|>", "<|eos3|>", "<|sos|>", "<|task_id|>"]
        )
        if t.convert_tokens_to_ids("<|s_0|>") != offset:
            raise RrpoError(f"the tokenizer puts <|s_0|> at {t.convert_tokens_to_ids('<|s_0|>')}, not {offset}")
        del added
        t.chat_template = (
            "{%- for message in messages %}{%- if message['role'] == 'user' %}"
            "{{- '<|sos|>' + message['content'] + '<|task_id|>' }}"
            "{%- elif message['role'] == 'assistant' %}{{- message['content']}}{%- endif %}"
            "{%- endfor %}"
        )
        t.save_pretrained(str(folder))
    elif tok is not None:
        tok.save(folder)


def _offset_from_tokenizer(folder: Path) -> int | None:
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise RrpoError("unreadable tokenizer.json", path) from None
    for t in data.get("added_tokens", []):
        if t.get("content") == "<|s_0|>":
            return int(t["id"])
    return None


def load_hf_layout(
    folder: str | os.PathLike,
    speech_offset: int | None = None,
    speech_vocab_size: int = 6561,
    text_vocab_size: int | None = None,
) -> TTSPolicy:
    """Read a GRPO-layout folder (written here, or by veRL/TRL from upstream's converter) into a
    :class:`TTSPolicy`. ``speech_offset``/``speech_vocab_size``/``text_vocab_size`` are needed only
    where the folder carries no ``rrpo`` block (defaults: ``<|s_0|>``'s id, 6561, and 151936 for
    CosyVoice2's offset, else the offset)."""
    from safetensors import safe_open

    from rrpo.policy.text import CharTokenizer, QwenTextTokenizer

    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RrpoError("no readable config.json", folder) from None
    meta = cfg.pop("rrpo", None) or {}
    offset = meta.get("speech_offset", speech_offset)
    if offset is None:
        offset = _offset_from_tokenizer(folder)
    if offset is None:
        raise RrpoError(
            "cannot find the speech offset (no rrpo block, no <|s_0|> in tokenizer.json); give speech_offset", folder
        )
    s = int(meta.get("speech_vocab_size", speech_vocab_size))
    text_rows = int(
        meta.get("text_vocab_size") or text_vocab_size or (QWEN_TEXT_ROWS if offset == COSYVOICE2_OFFSET else offset)
    )
    ids = hf_token_ids(offset, s)
    path = folder / "model.safetensors"
    if not path.exists():
        raise RrpoError("no model.safetensors (sharded checkpoints: merge them first)", folder)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        if k not in tensors:
            raise RrpoError(f"model.safetensors lacks '{k}'", path)
    emb, head = tensors.pop("model.embed_tokens.weight"), tensors.pop("lm_head.weight")
    bias = tensors.pop("lm_head.bias", None)
    if emb.shape[0] < ids["task_id"] + 1 or head.shape[0] < offset + s + N_SPECIAL:
        raise RrpoError(
            f"vocabulary of {emb.shape[0]} rows is too small for offset {offset} + {s} speech tokens + 5 special ids",
            path,
        )
    text = emb[:text_rows].clone()
    if (folder / EXTRA).exists():
        with safe_open(str(folder / EXTRA), framework="pt", device="cpu") as f:
            rows = f.get_tensor("text_rows")
        text[offset : offset + rows.shape[0]] = rows
    info = dict(
        meta.get("info") or {"emotions": [], "speakers": [], "languages": ["zh", "en"], "text_frontend": "basic"}
    )
    info["hf_speech_offset"] = int(offset)
    if info.get("tokenizer") == "char":
        tok = CharTokenizer.load(folder)
    elif (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists():
        tok = QwenTextTokenizer(folder)
        info.update({"tokenizer": "qwen", "tokenizer_path": str(folder.resolve())})
    else:
        tok = None
        info["tokenizer"] = "none"
    cfg.update({"vocab_size": text_rows, "tie_word_embeddings": bool(meta.get("tied_text_head", True))})
    for k in ("eos_token_id", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    qcfg = qwen2_config(cfg, folder / "config.json")
    with torch.device("meta"):
        probe = TTSPolicy(qcfg, s)
    want = {
        k[len("llm.model.") :]: v.shape
        for k, v in probe.state_dict().items()
        if k.startswith("llm.model.model.") and k != "llm.model.model.embed_tokens.weight"
    }
    missing = [k for k in want if k not in tensors]
    extra = [k for k in tensors if k not in want]
    if missing or extra:
        raise RrpoError(
            f"model.safetensors does not fit a Qwen2 of this config ({len(missing)} missing, "
            f"{len(extra)} unexpected; first: {(missing or extra)[0]})",
            path,
        )
    policy = TTSPolicy(qcfg, s, tokenizer=tok, info=info)
    dt = emb.dtype
    policy.to(dt)
    sd = {f"llm.model.{k}": v for k, v in tensors.items()}
    sd["llm.model.model.embed_tokens.weight"] = text
    sd["speech_embedding.weight"] = emb[offset : offset + s + N_SPECIAL]
    sd["llm_embedding.weight"] = emb[ids["sos"] : ids["sos"] + 2]
    sd["llm_decoder.weight"] = head[offset : offset + s + N_SPECIAL]
    sd["llm_decoder.bias"] = (
        bias[offset : offset + s + N_SPECIAL] if bias is not None else torch.zeros(s + N_SPECIAL, dtype=head.dtype)
    )
    if not qcfg.tie_word_embeddings:
        sd["llm.model.lm_head.weight"] = text.clone()
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(policy.state_dict()[k].shape)]
    if bad:
        raise RrpoError(f"tensor '{bad[0]}' has the wrong shape for this config", path)
    policy.load_state_dict(sd, strict=False)
    policy.eval()
    return policy
