"""Records of corpora without emotion labels (LibriSpeech, AN4, AISHELL-1) carry the placeholder
emotion ``neutral`` with ``extra.emotion_labelled: false``: no emotion filter passes them, and the
reward model's and the policy's data loaders leave them out instead of learning 'neutral'."""

from __future__ import annotations

from pathlib import Path

from rrpo.data.emotions import ESD_CLASSES
from rrpo.data.manifest import Manifest, Selection, Utterance, read_manifest, write_manifest


def utt(i: int, labelled: bool | None) -> Utterance:
    extra = {} if labelled is None else {"emotion_labelled": labelled}
    return Utterance(f"u{i}", f"u{i}.wav", 16000, 1.0, "", "s", "en", "neutral", "train", extra)


def unlabel(manifest: Path, ids) -> None:
    """Rewrite ``manifest`` with the records ``ids`` marked as having no emotion label."""
    man = read_manifest(manifest)
    for u in man:
        if u.id in ids:
            u.extra["emotion_labelled"] = False
    write_manifest(manifest, man)


def test_emotion_filters_never_pass_unlabelled_records():
    man = Manifest([utt(0, None), utt(1, False), utt(2, True)])
    assert [u.emotion_labelled for u in man] == [True, False, True]
    assert [u.id for u in man.select(emotions=["neutral"])] == ["u0", "u2"]
    assert [u.id for u in Selection().apply(man, emotions=["neutral", "happy"])] == ["u0", "u2"]
    # without an emotion filter (texts, speakers, splits) they are ordinary records
    assert [u.id for u in man.select(split="train")] == ["u0", "u1", "u2"]
    assert [u.id for u in Selection().apply(man)] == ["u0", "u1", "u2"]


def test_reward_items_leave_unlabelled_records_out(tmp_path):
    from rrpo.reward.data import DataConfig, load_items

    from tests.unit.reward_fixtures import make_corpus

    m, t = make_corpus(tmp_path, "a", speakers=("s1",), per_class=2)
    neutral = [u.id for u in read_manifest(m) if u.emotion == "neutral"]
    assert len(neutral) == 2
    unlabel(m, {neutral[0]})
    items, summary = load_items(DataConfig(manifests=[str(m)], tokens=[str(t)]), list(ESD_CLASSES))
    assert neutral[0] not in {it.id for it in items} and neutral[1] in {it.id for it in items}
    assert summary["dropped_unlabelled"] == 1 and summary["per_class"]["neutral"] == 1
    assert summary["utterances"] == 2 * len(ESD_CLASSES) - 1


def test_sft_examples_leave_unlabelled_records_out(tmp_path):
    from rrpo.config import load_config
    from rrpo.policy.sft import SFTConfig, load_examples

    from tests.unit.policy_fixtures import make_corpus

    m, t = make_corpus(tmp_path / "a")
    ids = [u.id for u in read_manifest(m)]
    unlabel(m, set(ids[:3]))
    cfg = load_config(SFTConfig, None, [f"data.manifest={m}", f"data.shards={t}", "data.heldout_fraction=0"]).data
    tr, held, *_ = load_examples(cfg)
    assert held == [] and sorted(e.uid for e in tr) == sorted(ids[3:])


def test_audit_references_are_emotion_labelled_records():
    """The audit's reference for (text, speaker, neutral) is a labelled neutral recording, never a
    record whose 'neutral' is a placeholder."""
    from rrpo.audit.scorer import AuditPrompts, _prompt_set

    a = Utterance("a", "a.wav", 16000, 1.0, "hello", "s", "en", "neutral", "train", {"emotion_labelled": False})
    b = Utterance("b", "b.wav", 16000, 1.0, "hello", "s", "en", "sad", "train")
    rows = _prompt_set(AuditPrompts(), Manifest([a, b]), ["neutral", "sad"])
    assert [(r["emotion"], r["ref_id"]) for r in rows] == [("neutral", None), ("sad", "b")]
    a.extra["emotion_labelled"] = True
    rows = _prompt_set(AuditPrompts(), Manifest([a, b]), ["neutral", "sad"])
    assert [(r["emotion"], r["ref_id"]) for r in rows] == [("neutral", "a"), ("sad", "b")]


def test_optimize_sft_examples_leave_unlabelled_records_out(tmp_path):
    """algo=sft of `rrpo optimize` reads prompts.manifest with prompts.shards; with no emotion filter
    (neither prompts.emotions nor the policy's) records without labels must still stay out."""
    from types import SimpleNamespace

    from rrpo.optimize.trainer import PromptConfig, _sft_examples

    from tests.unit.policy_fixtures import make_corpus

    m, t = make_corpus(tmp_path / "a")
    ids = [u.id for u in read_manifest(m)]
    unlabel(m, set(ids[:2]))
    cfg = SimpleNamespace(prompts=PromptConfig(manifest=str(m), shards=str(t)))
    out = _sft_examples(cfg, SimpleNamespace(emotions=()))
    assert sorted(e.uid for e in out) == sorted(ids[2:])


def test_judge_anchor_takes_no_unlabelled_recording():
    """The audit's anchor is each speaker's real speech of each emotion: a record whose 'neutral' is a
    placeholder is not one."""
    from rrpo.audit.anchor import anchor_recordings

    man = Manifest([utt(0, None), utt(1, False), utt(2, True)])
    assert [u.id for u in anchor_recordings(man, "s", set(), ["neutral"], [], 10)] == ["u0", "u2"]
