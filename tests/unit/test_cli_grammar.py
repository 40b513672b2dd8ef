"""One command-line grammar for every verb (``--config FILE`` + ``key=value``, outputs included) and
one utterance selection (:class:`rrpo.data.manifest.Selection`, ``[]`` = all); earlier spellings are
refused with one line naming the key to write instead."""

from __future__ import annotations

import argparse

import pytest

from rrpo.args import _OldSpelling, old_spelling_hint
from rrpo.cli import build_parser, main
from rrpo.config import load_config
from rrpo.data.manifest import Manifest, ManifestFilter, Selection, Utterance
from rrpo.errors import ConfigError


def verb_parsers(parser: argparse.ArgumentParser, prefix=()):
    """(verb words, parser) of every leaf verb (``rrpo rm train`` -> ("rm", "train"))."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, p in subs[0].choices.items():
        yield from verb_parsers(p, (*prefix, name))


VERBS = list(verb_parsers(build_parser()))


def test_every_verb_takes_only_config_and_keys():
    """The only visible options of every verb are --config and --help-config (and -h); the rest are
    ``key=value`` words. Hidden options exist only for retired flags."""
    names = {" ".join(v) for v, _ in VERBS}
    assert {
        "prepare",
        "synth",
        "manifest",
        "codec train",
        "codec encode",
        "codec decode",
        "tokenize",
        "rm train",
        "rm eval",
        "rm ablation",
        "policy sft",
        "policy generate",
        "policy export",
        "optimize",
        "judge train",
        "judge eval",
        "audit",
        "report",
        "demo",
        "experiment",
    } <= names
    for verb, p in VERBS:
        visible = {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        assert visible == {"-h", "--help", "--config", "--help-config"}, (verb, visible)
        positional = [a.dest for a in p._actions if not a.option_strings]
        assert positional == ["overrides"], (verb, positional)
        for a in p._actions:
            if a.option_strings and a.help == argparse.SUPPRESS:
                assert isinstance(a, _OldSpelling), (verb, a.option_strings)


RETIRED = [(v, a.option_strings[0], a.key, a.kind) for v, p in VERBS for a in p._actions if isinstance(a, _OldSpelling)]


@pytest.mark.parametrize("verb, flag, key, kind", RETIRED, ids=[f"{' '.join(v)} {f}" for v, f, _, _ in RETIRED])
def test_retired_flag_is_one_line_naming_the_key(capsys, tmp_path, verb, flag, key, kind):
    argv = [*verb, flag] + ([] if kind in ("true", "false") else [str(tmp_path / "x")])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rrpo: error: {flag} is no longer a flag"), err
    assert f"write {key}=" in lines[0] or f"write '{key}=[" in lines[0]
    assert not (tmp_path / "x").exists()


def test_hint_wording_by_kind():
    assert old_spelling_hint("--out", "out", "value", ["runs/x", "train.lr=1"]).endswith("write out=runs/x")
    assert old_spelling_hint("--speakers", "speakers", "list", ["a,b", "c"]).endswith("write 'speakers=[a, b, c]'")
    assert old_spelling_hint("--no-resume", "resume", "false", []).endswith("write resume=false")
    assert old_spelling_hint("--check-audio", "check_audio", "true", []).endswith("write check_audio=true")


def test_bare_word_names_the_key(capsys):
    assert main(["prepare", "casia"]) == 2
    err = capsys.readouterr().err
    assert "'casia' is not key=value" in err and "write corpus=casia" in err and len(err.strip().splitlines()) == 1


def test_outputs_are_keys_and_required_ones_are_named(capsys, tmp_path):
    assert main(["report", f"runs=[{tmp_path}]"]) == 2
    assert "config key 'out': is required" in capsys.readouterr().err
    assert main(["judge", "train"]) == 2
    assert "config key 'manifests': is required" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ selection


def _man() -> Manifest:
    rows = [
        ("a", "s1", "zh", "train"),
        ("b", "s2", "zh", "test"),
        ("c", "s1", "en", "test"),
        ("d", "s3", "en", "train"),
    ]
    return Manifest(
        [Utterance(i, f"{i}.wav", 16000, 1.0, "t", spk, lang, "happy", split) for i, spk, lang, split in rows]
    )


def test_selection_empty_means_all_and_fields_combine():
    """4 records; [] keeps all 4; splits=[test] keeps b, c; with languages=[en] only c; excluding s1
    from the test split leaves b."""
    man = _man()
    assert [u.id for u in Selection().apply(man)] == ["a", "b", "c", "d"]
    assert [u.id for u in Selection(splits=["test"]).apply(man)] == ["b", "c"]
    assert [u.id for u in Selection(splits=["test"], languages=["en"]).apply(man)] == ["c"]
    assert [u.id for u in Selection(splits=["test"], exclude_speakers=["s1"]).apply(man)] == ["b"]
    assert [u.id for u in Selection(speakers=["s1", "s3"]).apply(man, emotions=["sad"])] == []


def test_every_selecting_config_is_a_selection():
    from rrpo.audit.judge import JudgeConfig
    from rrpo.audit.scorer import AuditPrompts
    from rrpo.optimize.trainer import PromptConfig
    from rrpo.reward.data import DataConfig

    for cls in (ManifestFilter, AuditPrompts, PromptConfig, DataConfig, JudgeConfig):
        assert issubclass(cls, Selection), cls
        assert cls().splits == [] and cls().speakers == []


def test_old_selection_spellings_name_the_new_key():
    from rrpo.audit.judge import JudgeConfig
    from rrpo.optimize.trainer import OptimizeConfig

    with pytest.raises(ConfigError, match="config key 'prompts.split' is now 'prompts.splits'"):
        load_config(OptimizeConfig, None, ["prompts.split=[test]"])
    with pytest.raises(ConfigError, match="config key 'watch.split' is now 'watch.splits'"):
        load_config(OptimizeConfig, None, ["watch.split=[test]"])
    with pytest.raises(ConfigError, match=r"config key 'splits': expected a list, got null \(write \[\]"):
        load_config(JudgeConfig, None, ["splits=null"])
    assert load_config(JudgeConfig, None, ["splits=[]"]).splits == []


def test_pipeline_stage_commands_use_the_grammar(tmp_path):
    """Every argument-list stage of the demo and the experiment parses, with no retired flag."""
    from rrpo.demo import DemoConfig, stage_commands
    from rrpo.experiment import ExperimentConfig, build_stages

    parser = build_parser()
    cmds = list(stage_commands(DemoConfig(), tmp_path).values())
    cmds += [
        s.action
        for s in build_stages(ExperimentConfig(seeds=[0], content="spectral"), tmp_path, tmp_path / "o", main)
        if not callable(s.action)
    ]
    for argv in cmds:
        args = parser.parse_args(list(argv))
        assert not getattr(args, "old_spelling", None), argv
        assert all("=" in w for w in args.overrides), argv


def test_experiment_eval_stages_call_verbs_in_the_grammar(tmp_path):
    """The experiment's rm_eval and judge_eval stages run `rrpo rm eval` / `rrpo judge eval` through
    the dispatcher they are given; every call parses and builds its config."""
    from rrpo.args import config_from_args
    from rrpo.audit.commands import JudgeEvalArgs
    from rrpo.experiment import ExperimentConfig, build_stages
    from rrpo.reward.commands import RMEvalArgs
    from rrpo.reward.evaluate import EvalConfig

    parser, calls = build_parser(), []

    def run_verb(argv):
        args = parser.parse_args(argv)
        assert not getattr(args, "old_spelling", None), argv
        if argv[:2] == ["rm", "eval"]:
            calls.append(config_from_args(EvalConfig, args, io=RMEvalArgs)[1])
        else:
            calls.append(config_from_args(JudgeEvalArgs, args))
        return 0

    for st in build_stages(ExperimentConfig(seeds=[0], content="spectral"), tmp_path, tmp_path / "o", run_verb):
        if st.name.split("@")[0] in ("rm_eval", "judge_eval"):
            st.action()
    assert len(calls) == 14  # two folds (the default), 7 each
    assert calls[0].speakers == ["ZhaoZuoxiang"] and calls[0].out.endswith("vanilla_casia_heldout.json")
    assert "folds/ZhaoZuoxiang/" in calls[0].out and "folds/liuchanhg/" in calls[-1].out
    assert calls[-2].splits == ["test"] and calls[-1].manifests[0].endswith("esd.jsonl")
