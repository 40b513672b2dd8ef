"""Saving and loading policies: rrpo's own folder, SFT run folders, and CosyVoice2 directories.

rrpo policy folder::

    policy.json            {"format": "rrpo-policy", "version": 1, "qwen": {Qwen2 config},
                            "speech_vocab_size", "info": {emotions, speakers, languages, tokenizer}}
    model.safetensors      the weights, CosyVoice2 names
    text_tokenizer.json    character tokenizer (tiny policies)

CosyVoice2 directory (as released, e.g. ``CosyVoice2-0.5B``)::

    llm.pt                 state dict of Qwen2LM (torch.save; read with weights_only=True)
    CosyVoice-BlankEN/     Qwen2 config.json + tokenizer files

:func:`load_policy` reads any of: a policy folder, an SFT run folder (its ``policy/`` folder with
the newest checkpoint's weights), a CosyVoice2 directory. :func:`save_cosyvoice2` writes ``llm.pt``
back with the source's key set, key order and dtypes, so load -> save is lossless.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from rrpo.errors import RrpoError
from rrpo.io import atomic_path, write_json
from rrpo.policy.model import N_SPECIAL, TTSPolicy, qwen2_config_dict

FORMAT, VERSION = "rrpo-policy", 1
QWEN_SUBDIR = "CosyVoice-BlankEN"


# ---------------------------------------------------------------------------- rrpo folders


def _qwen_config_from_dict(d: dict, where):
    from rrpo.policy.model import qwen2_config

    return qwen2_config(d, where)


def save_policy(policy: TTSPolicy, folder: str | os.PathLike, weights: bool = True) -> Path:
    """Write ``policy.json``, the tokenizer and (unless ``weights=False``) ``model.safetensors``."""
    from rrpo.train.loop import save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / "policy.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "qwen": qwen2_config_dict(policy.qwen_config),
            "speech_vocab_size": policy.speech_vocab_size,
            "n_speakers": 0 if policy.speaker_embedding is None else policy.speaker_embedding.num_embeddings,
            "info": policy.info,
        },
    )
    if policy.tokenizer is not None:
        policy.tokenizer.save(folder)
    if weights:
        save_weights(policy, folder / "model.safetensors")
    return folder


def _build_from_folder(folder: Path) -> TTSPolicy:
    from rrpo.io import read_json
    from rrpo.policy.text import CharTokenizer, QwenTextTokenizer

    meta = read_json(folder / "policy.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RrpoError("not an rrpo policy description (format field)", folder / "policy.json")
    if meta.get("version") != VERSION:
        raise RrpoError(
            f"policy version {meta.get('version')} cannot be read (expects {VERSION})", folder / "policy.json"
        )
    info = meta.get("info", {})
    if info.get("tokenizer") == "qwen":
        tok = QwenTextTokenizer(info["tokenizer_path"])
    elif info.get("tokenizer") == "none":
        tok = None
    else:
        tok = CharTokenizer.load(folder)
    cfg = _qwen_config_from_dict(meta["qwen"], folder / "policy.json")
    return TTSPolicy(
        cfg, int(meta["speech_vocab_size"]), n_speakers=int(meta.get("n_speakers", 0)), tokenizer=tok, info=info
    )


def load_policy(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> TTSPolicy:
    """Load a policy folder, an SFT run folder or a CosyVoice2 directory (see the module docstring).

    ``checkpoint``: a ``checkpoints/step_N`` folder (or its ``model.safetensors``) whose weights to
    use instead of the folder's own.
    """
    from rrpo.train.loop import latest_checkpoint, load_weights

    path = Path(path)
    if not path.exists():
        raise RrpoError("policy not found", path)
    if (path / "llm.pt").exists():
        policy = load_cosyvoice2(path)
        if checkpoint is not None:
            _load_checkpoint_into(policy, Path(checkpoint))
        return policy
    if (
        (path / "config.json").exists()
        and (path / "model.safetensors").exists()
        and not (path / "policy.json").exists()
    ):
        from rrpo.policy.hf import load_hf_layout

        policy = load_hf_layout(path)
        if checkpoint is not None:
            _load_checkpoint_into(policy, Path(checkpoint))
        return policy
    weights = None
    if (path / "policy" / "policy.json").exists():  # an SFT run folder
        ck = latest_checkpoint(path)
        weights = (ck / "model.safetensors") if ck is not None else path / "policy" / "model.safetensors"
        path = path / "policy"
    if not (path / "policy.json").exists():
        raise RrpoError("not a policy (no policy.json), SFT run folder or CosyVoice2 directory (no llm.pt)", path)
    policy = _build_from_folder(path)
    if checkpoint is not None:
        ck = Path(checkpoint)
        weights = ck / "model.safetensors" if ck.is_dir() else ck
    load_weights(policy, weights or path / "model.safetensors")
    policy.eval()
    return policy


def _load_checkpoint_into(policy: TTSPolicy, ck: Path) -> None:
    """Weights of ``ck`` (a ``checkpoints/step_N`` folder, its ``model.safetensors``, or an
    ``llm.pt``) into ``policy``, strictly by name and shape."""
    from rrpo.train.loop import load_weights

    if ck.is_dir():
        ck = ck / "model.safetensors" if (ck / "model.safetensors").exists() else ck / "llm.pt"
    if not ck.exists():
        raise RrpoError("checkpoint not found", ck)
    if ck.suffix == ".pt":
        try:
            state = torch.load(ck, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RrpoError(f"cannot read with weights_only=True ({' '.join(str(e).split())[:160]})", ck) from None
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
        if policy.qwen_config.tie_word_embeddings:
            tensors.pop("llm.model.lm_head.weight", None)
        own = policy.state_dict()
        if policy.qwen_config.tie_word_embeddings:
            own.pop("llm.model.lm_head.weight", None)
        missing = [k for k in own if k not in tensors]
        bad = [k for k in tensors if k not in own or tuple(tensors[k].shape) != tuple(own[k].shape)]
        if missing or bad:
            k = (missing or bad)[0]
            raise RrpoError(
                f"checkpoint does not fit the policy ({len(missing)} missing, {len(bad)} unexpected or "
                f"misshaped; first: {k})",
                ck,
            )
        policy.load_state_dict(tensors, strict=False)
    else:
        load_weights(policy, ck)
    policy.eval()


# ---------------------------------------------------------------------------- CosyVoice2


def _speech_token_size(state: dict, where) -> int:
    w = state.get("llm_decoder.weight")
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise RrpoError("checkpoint lacks tensor 'llm_decoder.weight' (is this CosyVoice2's llm.pt?)", where)
    return int(w.shape[0]) - N_SPECIAL


def load_cosyvoice2(
    folder: str | os.PathLike, qwen_dir: str | os.PathLike | None = None, text_tokenizer: bool | None = None
) -> TTSPolicy:
    """Load a CosyVoice2 directory: ``llm.pt`` into a :class:`TTSPolicy` built from
    ``CosyVoice-BlankEN/config.json``, by exact parameter names and shapes.

    Every tensor of the model must be in the file with its shape, and every tensor in the file
    must belong to the model (the text head ``llm.model.lm_head.weight`` may be absent when tied);
    otherwise one error names the first offending tensors. ``text_tokenizer``: load the Qwen
    tokenizer (True), skip it (False; prompts must then be encoded by the caller), or load it
    where its files are present (None).
    """
    from rrpo.policy.text import QwenTextTokenizer

    folder = Path(folder)
    qwen_dir = Path(qwen_dir) if qwen_dir is not None else folder / QWEN_SUBDIR
    llm_pt = folder / "llm.pt"
    if not llm_pt.exists():
        raise RrpoError("no llm.pt in this CosyVoice2 directory", folder)
    if not (qwen_dir / "config.json").exists():
        raise RrpoError("no Qwen2 config.json (CosyVoice2 ships it in CosyVoice-BlankEN/)", qwen_dir)
    try:
        state = torch.load(llm_pt, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RrpoError(
            f"cannot read llm.pt with weights_only=True ({' '.join(str(e).split())[:200]})", llm_pt
        ) from None
    if not isinstance(state, dict):
        raise RrpoError("llm.pt does not hold a state dict", llm_pt)
    qcfg = json.loads((qwen_dir / "config.json").read_text(encoding="utf-8"))
    cfg = _qwen_config_from_dict(qcfg, qwen_dir / "config.json")
    s = _speech_token_size(state, llm_pt)
    if text_tokenizer is None:
        text_tokenizer = any((qwen_dir / f).exists() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json"))
    info = {
        "tokenizer": "qwen" if text_tokenizer else "none",
        "tokenizer_path": str(qwen_dir.resolve()),
        "emotions": [],
        "speakers": [],
        "languages": ["zh", "en"],
        "text_frontend": "basic",
        "cosyvoice2": {
            "source": str(folder.resolve()),
            "keys": [k for k in state],
            "dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in state.items() if isinstance(v, torch.Tensor)},
            "extras": {
                k: v
                for k, v in state.items()
                if not isinstance(v, torch.Tensor) and isinstance(v, (int, float, str, bool))
            },
        },
    }
    with torch.device("meta"):
        probe = TTSPolicy(cfg, s)
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    tied = cfg.tie_word_embeddings
    optional = {"llm.model.lm_head.weight"} if tied else set()
    missing = [k for k in expected if k not in tensors and k not in optional]
    if missing:
        raise RrpoError(
            f"checkpoint lacks {len(missing)} tensor(s) the model needs: {', '.join(missing[:3])}"
            + (" ..." if len(missing) > 3 else ""),
            llm_pt,
        )
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise RrpoError(
            f"checkpoint holds {len(unexpected)} tensor(s) this model does not have: "
            f"{', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""),
            llm_pt,
        )
    bad = [(k, tuple(tensors[k].shape), expected[k]) for k in tensors if tuple(tensors[k].shape) != expected[k]]
    if bad:
        k, got, want = bad[0]
        raise RrpoError(
            f"tensor '{k}' has shape {list(got)}, the model expects {list(want)} ({len(bad)} misshaped in all)", llm_pt
        )
    tok = QwenTextTokenizer(qwen_dir) if text_tokenizer else None
    policy = TTSPolicy(cfg, s, tokenizer=tok, info=info)
    sd = {k: v for k, v in tensors.items() if not (tied and k == "llm.model.lm_head.weight")}
    policy.load_state_dict(sd, strict=False)
    policy.eval()
    return policy


def save_cosyvoice2(policy: TTSPolicy, folder: str | os.PathLike, copy_rest: bool = True) -> Path:
    """Write ``folder/llm.pt`` in CosyVoice2's format (a plain state dict, CosyVoice2 names).

    A policy loaded from CosyVoice2 keeps the source's key set, order and dtypes (so load -> save
    is byte-for-byte the same tensors); a policy made here writes every tensor of its state dict
    in fp32. With ``copy_rest``, the source directory's other files (flow, vocoder, Qwen folder,
    yaml) are copied beside it where absent, making ``folder`` a complete CosyVoice2 directory.
    """
    if policy.speaker_embedding is not None:
        raise RrpoError("a policy with a speaker table has no CosyVoice2 equivalent; train it without speakers")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = policy.info.get("cosyvoice2")
    sd = policy.state_dict()
    if src:
        out = {}
        for k in src["keys"]:
            if k in src["extras"]:
                out[k] = src["extras"][k]
            else:
                dtype = getattr(torch, src["dtypes"][k])
                out[k] = sd[k].detach().to("cpu", dtype).clone()
    else:
        out = {k: v.detach().cpu().clone() for k, v in sd.items()}
    with atomic_path(folder / "llm.pt") as tmp:
        torch.save(out, tmp)
    if copy_rest and src:
        source = Path(src["source"])
        if source.resolve() != folder.resolve() and source.is_dir():
            for item in source.iterdir():
                dest = folder / item.name
                if item.name == "llm.pt" or dest.exists() or folder.resolve().is_relative_to(item.resolve()):
                    continue
                if item.is_dir():
                    shutil.copytree(item, dest)
                else:
                    shutil.copy2(item, dest)
    return folder / "llm.pt"
