"""rrpo.stages.run_stages: the sequential path and the parallel block (jobs > 1), with child
processes that are small Python scripts instead of rrpo verbs."""

import json
import sys
import time

import pytest

from rrpo.errors import RrpoError
from rrpo.stages import Stage, run_stages

# a child: argv = [folder, seconds, exit status]; records its start and end times and its thread setting
CHILD = """
import json, os, sys, time
folder, seconds, status = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
t0 = time.time()
time.sleep(seconds)
if status:
    print("rrpo: error: data.jsonl: the reason")
    sys.exit(status)
os.makedirs(folder, exist_ok=True)
json.dump({"start": t0, "end": time.time(), "omp": os.environ.get("OMP_NUM_THREADS")}, open(folder + "/t.json", "w"))
"""


def child(argv):
    return [sys.executable, "-c", CHILD, *argv]


def stage(tmp_path, name, seconds=0.0, status=0, needs=()):
    return Stage(name, tmp_path / name, [str(tmp_path / name), str(seconds), str(status)], True, tuple(needs))


def times_of(tmp_path, name):
    return json.loads((tmp_path / name / "t.json").read_text())


def test_parallel_block_overlaps_and_respects_needs(tmp_path):
    order = []
    stages = [
        Stage("first", tmp_path / "first", lambda: order.append("first")),
        stage(tmp_path, "a", 0.8),
        stage(tmp_path, "b", 0.8),
        stage(tmp_path, "c", 0.1, needs=("a",)),
        Stage("last", tmp_path / "last", lambda: order.append("last")),
    ]
    t = run_stages(stages, lambda argv: 1, tag="t", jobs=2, log_dir=tmp_path / "logs", command=child)
    a, b, c = (times_of(tmp_path, n) for n in "abc")
    assert b["start"] < a["end"] and a["start"] < b["end"]  # a and b ran at the same time
    assert c["start"] >= a["end"]  # c waited for a
    assert {a["omp"], b["omp"], c["omp"]} == {"1"}
    assert order == ["first", "last"] and set(t) == {"first", "a", "b", "c", "last"}
    assert all((tmp_path / n / ".done").exists() for n in ("first", "a", "b", "c", "last"))
    assert (tmp_path / "logs" / "a.log").read_text().startswith("$ ")


def test_parallel_stages_run_in_process_one_at_a_time_with_one_job(tmp_path):
    ran = []

    def verb(argv):
        ran.append(argv[0])
        return 0

    stages = [stage(tmp_path, "a"), stage(tmp_path, "b")]
    assert set(run_stages(stages, verb, tag="t", jobs=1)) == {"a", "b"}
    assert ran == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_done_stages_are_skipped_and_forced_ones_redone(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".done").write_text("ok\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".done").write_text("ok\n")
    stages = [stage(tmp_path, "a"), stage(tmp_path, "b"), stage(tmp_path, "c", needs=("a",))]
    t = run_stages(stages, lambda argv: 1, {"b"}, tag="t", jobs=2, log_dir=tmp_path / "logs", command=child)
    assert t["a"] == 0.0 and not (tmp_path / "a" / "t.json").exists()
    assert (tmp_path / "b" / "t.json").exists() and (tmp_path / "c" / "t.json").exists()


def test_a_failure_lets_running_stages_finish_and_starts_nothing_new(tmp_path):
    stages = [
        stage(tmp_path, "slow", 0.6),
        stage(tmp_path, "bad", 0.0, status=2),
        stage(tmp_path, "after", 0.0),
        stage(tmp_path, "needs_bad", 0.0, needs=("bad",)),
    ]
    t0 = time.time()
    with pytest.raises(RrpoError) as e:
        run_stages(stages, lambda argv: 1, tag="t", jobs=2, log_dir=tmp_path / "logs", command=child)
    msg = str(e.value)
    assert "'bad' failed (exit 2: data.jsonl: the reason)" in msg and str(tmp_path / "logs" / "bad.log") in msg
    assert (tmp_path / "slow" / ".done").exists() and time.time() - t0 >= 0.6  # waited for it
    assert not (tmp_path / "bad" / ".done").exists()
    assert not (tmp_path / "after").exists() and not (tmp_path / "needs_bad").exists()


def test_a_need_placed_after_its_stage_is_an_error(tmp_path):
    stages = [stage(tmp_path, "c", needs=("a",)), stage(tmp_path, "a")]
    for jobs in (1, 2):
        with pytest.raises(RrpoError, match=r"'c' needs \['a'\], which are not stages before it"):
            run_stages(stages, lambda argv: 1, tag="t", jobs=jobs, log_dir=tmp_path / "logs", command=child)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_stage_times_survive_a_failed_invocation(tmp_path):
    """A stage's marker records its seconds; a rerun after a failure reports them for the stages it
    skipped (a failed invocation writes no record of its own)."""
    from rrpo.stages import recorded_seconds, stage_seconds

    stages = [stage(tmp_path, "a", 0.3), stage(tmp_path, "b", 0.0, status=1)]
    with pytest.raises(RrpoError):
        run_stages(stages, lambda argv: 1, tag="t", jobs=2, log_dir=tmp_path / "logs", command=child)
    made = recorded_seconds(stages[0])
    assert made is not None and made >= 0.3 and recorded_seconds(stages[1]) is None
    stages[1] = stage(tmp_path, "b", 0.0)  # the cause fixed
    t = run_stages(stages, lambda argv: 1, tag="t", jobs=2, log_dir=tmp_path / "logs", command=child)
    assert t["a"] == 0.0 and t["b"] > 0  # this invocation's own times
    merged = stage_seconds(t, stages, earlier={"a": 99.0, "b": 99.0})
    assert merged == {"a": made, "b": t["b"]}


def test_stage_seconds_by_hand(tmp_path):
    """Now > marker > earlier record > 0, worked by hand; a marker from before the record ('ok')
    counts as none."""
    from rrpo.stages import stage_seconds

    names = ["ran", "marked", "old_marker", "unknown"]
    stages = [Stage(n, tmp_path / n, ["x"]) for n in names]
    for n, text in (("marked", '{"seconds": 12.5}\n'), ("old_marker", "ok\n")):
        (tmp_path / n).mkdir()
        (tmp_path / n / ".done").write_text(text)
    times = {"ran": 3.0, "marked": 0.0, "old_marker": 0.0, "unknown": 0.0}
    merged = stage_seconds(times, stages, earlier={"ran": 7.0, "marked": 8.0, "old_marker": 9.0})
    assert merged == {"ran": 3.0, "marked": 12.5, "old_marker": 9.0, "unknown": 0.0}
