"""Tokenise a whole manifest into token shards (what ``rrpo tokenize`` runs)."""

from __future__ import annotations

import os

from rrpo.errors import RrpoError


def tokenize_manifest(
    codec_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    shard_size: int = 500,
    progress: bool | None = None,
) -> dict:
    """Tokens and per-token energies of every utterance of ``manifest`` into shards at ``out``.

    Resumable: utterances already in finished shards are skipped, and whatever was encoded before an
    error is kept. Returns counts (utterances, encoded now, resumed past, vocab size).

    A codec whose tokens are relative to the speaker (``profile_in_tokens``) first computes one profile per
    speaker of the manifest from all of that speaker's recordings (a second pass over the audio),
    records them in the shards' ``meta.json`` (``profiles``), and encodes each utterance with its
    speaker's profile. A resumed run reuses the profiles of its meta.json.
    """
    import json
    from pathlib import Path

    from tqdm import tqdm

    from rrpo.codec import codec_description, load_codec
    from rrpo.codec.shards import ShardWriter
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest
    from rrpo.io import file_sha256

    if shard_size < 1:
        raise RrpoError("shard_size must be at least 1")
    codec = load_codec(codec_dir)
    man = read_manifest(manifest)
    sha = file_sha256(man.path)
    meta = {
        "vocab_size": codec.vocab_size,
        "frame_rate": codec.frame_rate,
        "codec": codec_description(codec),
        "manifest": str(man.path),
        "manifest_sha256": sha,
    }
    profiles = {}
    if getattr(codec, "profile_in_tokens", False):
        from rrpo.codec.profile import SpeakerProfile

        old_meta = Path(out) / "meta.json"
        old = json.loads(old_meta.read_text(encoding="utf-8")) if old_meta.exists() else {}
        if old.get("manifest_sha256") == sha and old.get("codec") == meta["codec"] and old.get("profiles"):
            profiles = {
                k: SpeakerProfile.from_dict(v, old_meta, codec.cfg.mel_bands, codec.n_syn_bins)
                for k, v in old["profiles"].items()
            }
        else:
            by_spk: dict[str, list] = {}
            for u in man:
                by_spk.setdefault(u.speaker, []).append(u)
            bar = tqdm(
                total=len(man), desc="speaker profiles", unit="utt", disable=None if progress is None else not progress
            )

            def audios(utts):
                for u in utts:
                    a = load_audio(man.audio_path(u))
                    bar.update(1)
                    yield a

            for spk, utts in by_spk.items():
                try:
                    profiles[spk] = codec.profile_from_audio(audios(utts), speaker=spk)
                except RrpoError as e:
                    raise RrpoError(e.reason, man.path) from None
            bar.close()
        meta["profiles"] = {k: v.to_dict() for k, v in sorted(profiles.items())}
    writer = ShardWriter(out, meta, shard_size=shard_size)
    todo = [u for u in man if u.id not in writer.done]
    skipped = len(man) - len(todo)
    try:
        for u in tqdm(todo, desc="tokenize", unit="utt", disable=None if progress is None else not progress):
            path = man.audio_path(u)
            audio, sr = load_audio(path)
            try:
                kw = {"profile": profiles[u.speaker]} if profiles else {}
                tokens, energy = codec.encode_with_energy(audio, sr, **kw)
            except RrpoError as e:
                raise RrpoError(f"utterance '{u.id}': {e.reason}", path) from None
            writer.add(u.id, tokens, energy)
    finally:
        writer.close()  # whatever was encoded is kept; a re-run resumes after it
    return {
        "shards": str(out),
        "utterances": len(man),
        "encoded": len(todo),
        "resumed_past": skipped,
        "vocab_size": codec.vocab_size,
        "speakers": len(profiles) or None,
    }
