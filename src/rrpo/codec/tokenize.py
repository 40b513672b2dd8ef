"""Tokenise a whole manifest into token shards (what ``rrpo tokenize`` runs)."""

from __future__ import annotations

import os

from rrpo.errors import RrpoError


def tokenize_manifest(codec_dir: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike,
                      shard_size: int = 500, progress: bool | None = None) -> dict:
    """Tokens and per-token energies of every utterance of ``manifest`` into shards at ``out``.

    Resumable: utterances already in finished shards are skipped, and whatever was encoded before an
    error is kept. Returns counts (utterances, encoded now, resumed past, vocab size).
    """
    from tqdm import tqdm

    from rrpo.codec import codec_description, load_codec
    from rrpo.codec.shards import ShardWriter, file_sha256
    from rrpo.data.audio import load_audio
    from rrpo.data.manifest import read_manifest

    if shard_size < 1:
        raise RrpoError("shard_size must be at least 1")
    codec = load_codec(codec_dir)
    man = read_manifest(manifest)
    writer = ShardWriter(out, {"vocab_size": codec.vocab_size, "frame_rate": codec.frame_rate,
                               "codec": codec_description(codec), "manifest": str(man.path),
                               "manifest_sha256": file_sha256(man.path)}, shard_size=shard_size)
    todo = [u for u in man if u.id not in writer.done]
    skipped = len(man) - len(todo)
    try:
        for u in tqdm(todo, desc="tokenize", unit="utt", disable=None if progress is None else not progress):
            path = man.audio_path(u)
            audio, sr = load_audio(path)
            try:
                tokens, energy = codec.encode_with_energy(audio, sr)
            except RrpoError as e:
                raise RrpoError(f"utterance '{u.id}': {e.reason}", path) from None
            writer.add(u.id, tokens, energy)
    finally:
        writer.close()  # whatever was encoded is kept; a re-run resumes after it
    return {"shards": str(out), "utterances": len(man), "encoded": len(todo), "resumed_past": skipped,
            "vocab_size": codec.vocab_size}
