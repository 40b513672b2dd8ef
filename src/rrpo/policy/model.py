"""The TTS policy: a Qwen2 decoder with CosyVoice2's layout.

Parameters, named exactly as in CosyVoice2's ``Qwen2LM`` (so ``llm.pt`` loads by name)::

    llm_embedding.weight          (2, D)          row 0 = start of sequence, row 1 = task id
    llm.model.model.*             Qwen2ForCausalLM(config).model: text embedding + decoder layers
    llm.model.lm_head.weight      tied to llm.model.model.embed_tokens.weight (not used here)
    llm_decoder.weight / .bias    (V_out, D), (V_out,)   speech head, V_out = S + 3
    speech_embedding.weight       (V_out, D)
    speaker_embedding.weight      (n_speakers, D)  only in a tiny policy built with speakers

``S`` is the speech vocabulary (6561 in CosyVoice2); id ``S`` is end-of-speech, ``S+1`` and ``S+2``
are special rows that are never sampled. One sequence is::

    [sos, (speaker), instruction <|endofprompt|> text, task_id, s_1 ... s_T, eos]

and the head reads the positions from ``task_id`` on: position ``t`` predicts ``s_{t+1}``, the
last predicts ``eos``. Batches put the prompt left-padded (so speech starts at the same column in
every row; positions are counted over valid tokens only, so padding never changes a row's output)
and the speech right-padded. Masks are True = valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rrpo.errors import RrpoError
from rrpo.policy.frontend import normalize
from rrpo.policy.text import ENDOFPROMPT, CharTokenizer, TextTokenizer, instruction_for

SOS, TASK_ID = 0, 1
IGNORE = -100
N_SPECIAL = 3  # eos and two special rows after the speech vocabulary


_CACHE_ARG: dict = {}


def _cache_arg(cls) -> str:
    """The KV-cache argument of the installed transformers' Qwen2Model.forward: ``cache`` (5.x from
    about 5.2x; ``past_key_values`` is deprecated there) or ``past_key_values`` (4.x)."""
    if cls not in _CACHE_ARG:
        import inspect

        _CACHE_ARG[cls] = "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"
    return _CACHE_ARG[cls]


class _Qwen2Holder(nn.Module):
    """Holds ``model`` = Qwen2ForCausalLM, mirroring CosyVoice2's ``Qwen2Encoder`` attribute path."""

    def __init__(self, config):
        super().__init__()
        from transformers import Qwen2ForCausalLM

        self.model = Qwen2ForCausalLM(config)


@dataclass
class Prompts:
    """Encoded prompts. ``text_ids`` (B, L) right-padded with 0, ``text_lens`` (B,) ids per row
    (instruction, ``<|endofprompt|>`` and text), ``content_lens`` (B,) ids of the text alone (for
    min/max generation length), ``speaker_ids`` (B,) or None."""

    text_ids: torch.Tensor
    text_lens: torch.Tensor
    content_lens: torch.Tensor
    speaker_ids: torch.Tensor | None = None

    def to(self, device) -> Prompts:
        return Prompts(
            self.text_ids.to(device),
            self.text_lens.to(device),
            self.content_lens.to(device),
            None if self.speaker_ids is None else self.speaker_ids.to(device),
        )

    def __len__(self) -> int:
        return int(self.text_ids.shape[0])

    def unconditional(self, rows: torch.Tensor | None = None) -> Prompts:
        """The same prompts with the emotion instruction (and its ``<|endofprompt|>``) removed, on
        ``rows`` (a (B,) bool mask; None = every row): ``[sos, (speaker), text, task_id]``, the
        "no emotion" condition of classifier-free guidance, which is also CosyVoice2's prompt
        without an instruction. The text is the last ``content_lens`` ids of a row. Example: ids
        ``[7, 8, 1, 3, 4]`` (instruction 7 8, ``<|endofprompt|>`` 1, text 3 4; content 2) become ``[3, 4]``."""
        b = len(self)
        drop = torch.ones(b, dtype=torch.bool) if rows is None else torch.as_tensor(rows, dtype=torch.bool).cpu()
        ids, lens = self.text_ids.cpu(), self.text_lens.cpu()
        new = []
        for i in range(b):
            n = int(lens[i])
            new.append(ids[i, n - int(self.content_lens[i]) : n] if drop[i] else ids[i, :n])
        new_lens = torch.tensor([len(r) for r in new], dtype=torch.long)
        out = torch.zeros(b, int(new_lens.max()) if b else 0, dtype=torch.long)
        for i, r in enumerate(new):
            out[i, : len(r)] = r
        dev = self.text_ids.device
        return Prompts(out.to(dev), new_lens.to(dev), self.content_lens, self.speaker_ids)

    @staticmethod
    def cat(parts: Sequence[Prompts]) -> Prompts:
        """The rows of several prompt batches, in order, as one batch (padded to the longest)."""
        n = max(int(p.text_ids.shape[1]) for p in parts)
        pad = lambda x: torch.nn.functional.pad(x, (0, n - x.shape[1]))  # noqa: E731
        spk = [p.speaker_ids for p in parts]
        return Prompts(
            torch.cat([pad(p.text_ids) for p in parts]),
            torch.cat([p.text_lens for p in parts]),
            torch.cat([p.content_lens for p in parts]),
            None if any(s is None for s in spk) else torch.cat(spk),
        )

    def select(self, rows: Sequence[int]) -> Prompts:
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        n = int(self.text_lens[idx].max()) if len(idx) else 0
        return Prompts(
            self.text_ids[idx, :n],
            self.text_lens[idx],
            self.content_lens[idx],
            None if self.speaker_ids is None else self.speaker_ids[idx],
        )


class TTSPolicy(nn.Module):
    """Qwen2 decoder + CosyVoice2 heads. ``info`` holds the non-weight description (emotions,
    speakers, languages, tokenizer kind, provenance) written to ``policy.json``."""

    def __init__(
        self,
        qwen_config,
        speech_vocab_size: int,
        n_speakers: int = 0,
        tokenizer: TextTokenizer | None = None,
        info: dict | None = None,
    ):
        super().__init__()
        d = qwen_config.hidden_size
        self.speech_vocab_size = int(speech_vocab_size)
        self.eos_id = self.speech_vocab_size
        self.n_out = self.speech_vocab_size + N_SPECIAL
        self.llm_embedding = nn.Embedding(2, d)
        self.llm = _Qwen2Holder(qwen_config)
        self.llm_decoder = nn.Linear(d, self.n_out)
        self.speech_embedding = nn.Embedding(self.n_out, d)
        self.speaker_embedding = nn.Embedding(n_speakers, d) if n_speakers else None
        lm_head = self.llm.model.lm_head.weight
        if lm_head is not self.llm.model.model.embed_tokens.weight:
            lm_head.requires_grad_(False)  # untied text head: CosyVoice2 never uses it
        self.tokenizer = tokenizer
        self.info = dict(info or {})

    # ------------------------------------------------------------------ description
    @property
    def qwen_config(self):
        return self.llm.model.config

    @property
    def emotions(self) -> list[str]:
        return list(self.info.get("emotions", []))

    @property
    def text_frontend(self) -> str:
        """``basic`` (numbers and symbols spelled out, rrpo.policy.frontend) or ``none``; policy
        folders written before the frontend existed read as ``none``, so they mean what they meant."""
        return str(self.info.get("text_frontend", "none"))

    @property
    def speakers(self) -> list[str]:
        return list(self.info.get("speakers", []))

    @property
    def knows_unconditional(self) -> bool:
        """True where the prompt without an instruction means "no emotion asked" (the unconditional
        side of classifier-free guidance): a policy SFT'd with ``data.drop_emotion > 0`` (recorded
        in ``info["emotion_dropout"]``) or a CosyVoice2 checkpoint (trained on plain TTS prompts)."""
        return float(self.info.get("emotion_dropout", 0.0)) > 0 or self.info.get("tokenizer") == "qwen"

    def instruction(self, emotion: str, language: str) -> str:
        """The instruction text for ``emotion``; an emotion the policy was not trained on is an error
        (a CosyVoice2 checkpoint, with no emotion list, accepts every emotion of the table)."""
        return instruction_for(emotion, language, self.emotions or None)

    # ------------------------------------------------------------------ prompts
    def encode_prompts(
        self,
        texts: Sequence[str],
        emotions: Sequence[str],
        languages: Sequence[str] | str,
        speakers: Sequence[str] | None = None,
    ) -> Prompts:
        """Tokenise ``instruction(emotion) <|endofprompt|> normalize(text)`` per row (errors are one
        line); the text goes through the policy's text frontend (:attr:`text_frontend`), so SFT,
        optimisation and generation see the same normalised text."""
        if self.tokenizer is None:
            raise RrpoError("this policy has no text tokenizer")
        if isinstance(languages, str):
            languages = [languages] * len(texts)
        if not (len(texts) == len(emotions) == len(languages)):
            raise ValueError("texts, emotions and languages must have equal lengths")
        rows, content = [], []
        for text, emo, lang in zip(texts, emotions, languages):
            instr = self.tokenizer.encode(self.instruction(emo, lang) + ENDOFPROMPT)
            body = self.tokenizer.encode(normalize(text, lang, self.text_frontend))
            if not body:
                raise RrpoError(f"empty text to speak (emotion {emo})")
            rows.append(instr + body)
            content.append(len(body))
        lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.zeros(len(rows), int(lens.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        spk = None
        if self.speaker_embedding is not None:
            if speakers is None:
                raise RrpoError(f"this policy is conditioned on a speaker; give one of: {', '.join(self.speakers)}")
            known = {s: i for i, s in enumerate(self.speakers)}
            bad = sorted({s for s in speakers if s not in known})
            if bad:
                raise RrpoError(f"unknown speaker(s) {', '.join(bad)} (the policy knows: {', '.join(self.speakers)})")
            spk = torch.tensor([known[s] for s in speakers], dtype=torch.long)
        return Prompts(ids, lens, torch.tensor(content, dtype=torch.long), spk)

    def prompt_embeddings(self, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[sos, (speaker), text, task_id]`` embeddings (B, P, D) and mask (B, P)."""
        dev = self.llm_embedding.weight.device
        prompts = prompts.to(dev)
        text = self.llm.model.model.embed_tokens(prompts.text_ids)  # (B, L, D)
        sos, task = self.llm_embedding.weight[SOS, None], self.llm_embedding.weight[TASK_ID, None]  # (1, D)
        rows = []
        for i in range(len(prompts)):
            parts = [sos]
            if self.speaker_embedding is not None:
                parts.append(self.speaker_embedding.weight[prompts.speaker_ids[i], None])
            parts += [text[i, : int(prompts.text_lens[i])], task]
            rows.append(torch.cat(parts))  # (P_i, D)
        p = max(len(r) for r in rows)
        emb = torch.stack([torch.cat([r.new_zeros(p - len(r), r.shape[1]), r]) for r in rows])  # (B, P, D)
        lens = torch.tensor([len(r) for r in rows], device=dev)
        mask = torch.arange(p, device=dev)[None] >= (p - lens)[:, None]  # (B, P) left padding
        return emb, mask

    # ------------------------------------------------------------------ teacher-forced forward
    def forward(self, prompts: Prompts, speech: torch.Tensor, speech_lens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits over the speech positions.

        ``speech`` (B, T) right-padded token ids in [0, S), ``speech_lens`` (B,). Returns logits
        (B, T+1, V_out): row ``t < len`` scores ``speech[:, t]``, row ``len`` scores end-of-speech;
        rows past ``len`` are padding.
        """
        emb, pmask = self.prompt_embeddings(prompts)  # (B, P, D), (B, P)
        dev = emb.device
        speech = speech.to(dev)
        speech_lens = speech_lens.to(dev)
        t = speech.shape[1]
        smask = torch.arange(t, device=dev)[None] < speech_lens[:, None]  # (B, T)
        semb = self.speech_embedding(speech.clamp(0, self.n_out - 1) * smask)  # (B, T, D)
        hidden = self.decode(torch.cat([emb, semb.to(emb.dtype)], 1), torch.cat([pmask, smask], 1))
        p = emb.shape[1]
        return self.llm_decoder(hidden[:, p - 1 : p + t])  # (B, T+1, V_out)

    def decode(self, embeds: torch.Tensor, mask: torch.Tensor, past=None, position_ids=None):
        """Run the Qwen2 layers on ``embeds`` (B, N, D) with ``mask`` (B, N_past + N); return hidden
        states (B, N, D), and with ``past`` (a transformers Cache) also the updated cache."""
        if position_ids is None:
            position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1] :]
        attn = None if bool(mask.all()) else mask.long()  # no padding: plain causal attention, less overhead
        qwen = self.llm.model.model
        name = _cache_arg(type(qwen))
        out = qwen(
            inputs_embeds=embeds,
            attention_mask=attn,
            position_ids=position_ids,
            use_cache=past is not None,
            **{name: past},
        )
        if past is not None:
            return out.last_hidden_state, getattr(out, name)
        return out.last_hidden_state

    def targets(self, speech: torch.Tensor, speech_lens: torch.Tensor) -> torch.Tensor:
        """(B, T+1) targets aligned with :meth:`forward`: the speech ids, eos at ``len``, IGNORE after."""
        b, t = speech.shape
        tgt = torch.full((b, t + 1), IGNORE, dtype=torch.long, device=speech.device)
        pos = torch.arange(t + 1, device=speech.device)[None]
        tgt[:, :t] = torch.where(pos[:, :t] < speech_lens[:, None], speech, IGNORE)
        tgt[pos == speech_lens[:, None]] = self.eos_id
        return tgt


def _qwen2_config_class():
    from transformers import Qwen2Config

    return Qwen2Config


def _reads_rope_parameters(cls) -> bool:
    """True where this transformers spells the RoPE base ``rope_parameters["rope_theta"]`` (5.x);
    False where it reads ``rope_theta`` and keeps an unknown ``rope_parameters`` as an inert
    attribute (4.x)."""
    import inspect

    return "rope_parameters" in inspect.signature(cls.__init__).parameters


def rope_base(cfg) -> float:
    """The RoPE base this transformers will actually use for ``cfg``."""
    if _reads_rope_parameters(type(cfg)):
        return float((cfg.rope_parameters or {}).get("rope_theta", 10000.0))
    return float(cfg.rope_theta)


def declared_rope(d: dict, where=None) -> tuple[float | None, str | None]:
    """(RoPE base, rope type) a config dict declares under either spelling (``rope_theta`` of
    transformers 4.x, ``rope_parameters`` of 5.x); (None, None) if neither. Two different
    values are an error: the folder would mean different models under different versions."""
    top = d.get("rope_theta")
    params = d.get("rope_parameters") or {}
    nested = params.get("rope_theta") if isinstance(params, dict) else None
    if top is not None and nested is not None and float(top) != float(nested):
        raise RrpoError(
            f"config declares two RoPE bases (rope_theta {top}, rope_parameters.rope_theta {nested})", where
        )
    base = nested if nested is not None else top
    rtype = (
        params.get("rope_type", "default")
        if isinstance(params, dict) and params
        else ((d.get("rope_scaling") or {}).get("rope_type", (d.get("rope_scaling") or {}).get("type", "default")))
    )
    return (None if base is None else float(base)), rtype


def qwen2_config(d: dict, where=None):
    """A Qwen2 config from a dict in either transformers spelling, meaning the same under 4.x and
    5.x: the RoPE base is passed in both spellings and the base the installed version will use is
    checked against the declared one (a mismatch is refused, never silently used)."""
    cls = _qwen2_config_class()
    d = {k: v for k, v in d.items() if k not in ("transformers_version", "architectures")}
    base, rtype = declared_rope(d, where)
    if base is not None:
        if rtype not in (None, "default"):
            if not _reads_rope_parameters(cls):
                raise RrpoError(f"RoPE type '{rtype}' needs transformers >= 5 here", where)
        else:
            d["rope_theta"] = base
            params = dict(d.get("rope_parameters") or {})
            params.update({"rope_theta": base, "rope_type": "default"})
            d["rope_parameters"] = params
    try:
        cfg = cls(**d)
    except (TypeError, ValueError) as e:
        raise RrpoError(f"invalid Qwen2 config ({e})", where) from None
    if base is not None and rope_base(cfg) != base:
        raise RrpoError(
            f"this transformers reads RoPE base {rope_base(cfg):g}, the config says {base:g}; "
            "refusing a silently different model",
            where,
        )
    cfg._attn_implementation = "sdpa"
    return cfg


def qwen2_config_dict(cfg) -> dict:
    """``cfg.to_dict()`` with the RoPE base written in both spellings (``rope_theta`` for 4.x,
    ``rope_parameters`` for 5.x), so a folder saved under one version reads the same under the other."""
    d = cfg.to_dict()
    base = rope_base(cfg)
    d["rope_theta"] = base
    params = dict(d.get("rope_parameters") or {"rope_type": "default"})
    params["rope_theta"] = base
    d["rope_parameters"] = params
    return d


def build_qwen_config(
    hidden_size: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate_size: int,
    text_vocab_size: int,
    max_positions: int = 4096,
    rope_theta: float = 10000.0,
):
    """A small Qwen2 config (tied text embedding; sdpa attention)."""
    return qwen2_config(
        dict(
            vocab_size=text_vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            rope_theta=rope_theta,
        )
    )


def tiny_policy(
    tokenizer: CharTokenizer,
    speech_vocab_size: int,
    *,
    hidden_size: int = 256,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 768,
    speakers: Sequence[str] = (),
    emotions: Sequence[str] = (),
    languages: Sequence[str] = (),
    seed: int = 0,
) -> TTSPolicy:
    """A freshly initialised policy over a character tokenizer."""
    cfg = build_qwen_config(hidden_size, layers, heads, kv_heads, intermediate_size, tokenizer.vocab_size)
    torch.manual_seed(seed)
    info = {"tokenizer": "char", "emotions": list(emotions), "speakers": list(speakers), "languages": list(languages)}
    return TTSPolicy(cfg, speech_vocab_size, n_speakers=len(speakers), tokenizer=tokenizer, info=info)
