"""Run a pipeline of named stages, skipping those finished earlier (``rrpo demo``, ``rrpo experiment``).

A stage is an ``rrpo`` argument list run in-process (so a pipeline is also a worked example of the
commands) or a Python callable. Each stage owns a folder; a ``.done`` marker written there after
success makes a rerun skip it, so an interrupted pipeline resumes at the stage that failed. The
marker records the seconds the stage took (:func:`recorded_seconds`), so the stage times of a
pipeline finished over several invocations survive the ones that failed.

With ``jobs`` > 1, consecutive argument-list stages marked ``parallel`` run as child processes
(``python -m rrpo ...``) of one thread each, up to ``jobs`` at a time, each as soon as the stages it
``needs`` are done; their output goes to ``LOG_DIR/<stage>.log``. On a CPU of few cores, two
one-thread processes of small models do about 1.8x the work of one two-thread process. Callable
stages always run in this process, in order, and end a parallel block.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

from rrpo.errors import ConfigError, RrpoError

Action = Sequence[str] | Callable[[], None]


@dataclass
class Stage:
    name: str
    folder: Path
    action: Action
    #: may run in a child process beside other parallel stages (argument-list stages only)
    parallel: bool = False
    #: names of earlier stages this one reads (only those of the same parallel block matter)
    needs: tuple[str, ...] = dc_field(default_factory=tuple)

    def describe(self) -> str:
        if callable(self.action):
            return (self.action.__doc__ or self.name).strip().splitlines()[0]
        return "rrpo " + shlex.join(self.action)  # quoted: a printed stage pastes into a shell as is


def check_stage_overrides(cfg: object, targets: dict[str, str]) -> None:
    """Build every stage's verb config from the pipeline's override list for it, so that a typo or a
    wrong type in any list fails when the pipeline's config is loaded (one line naming the list),
    not when that stage's turn comes hours later.

    ``targets`` maps a field of ``cfg`` (a list of ``key=value``) to ``"module:ConfigClass"`` of the
    verb the list is given to; the verb's defaults plus the list must make a valid config (keys,
    types and ``__post_init__`` range checks). Paths the pipeline adds itself are not in the lists.
    """
    import importlib

    from rrpo.config import load_config

    for field, target in targets.items():
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        try:
            load_config(cls, None, list(getattr(cfg, field)))
        except ConfigError as e:
            raise ConfigError(f"config key '{field}' (overrides for {name}): {e.reason}") from None


def child_command(argv: Sequence[str]) -> list[str]:
    """The command line of a stage run as a child process: this Python's ``rrpo``."""
    return [sys.executable, "-m", "rrpo", *argv]


def one_thread_env() -> dict[str, str]:
    """This process' environment with every math library held to one thread."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = "1"
    return env


def run_stages(
    stages: Sequence[Stage],
    run_verb: Callable[[list[str]], int],
    force: set[str] = frozenset(),
    tag: str = "stage",
    jobs: int = 1,
    log_dir: Path | None = None,
    command: Callable[[Sequence[str]], list[str]] = child_command,
) -> dict[str, float]:
    """Run ``stages`` in order; returns seconds per stage (0.0 for a skipped one; a parallel stage's
    own wall time, so with ``jobs`` > 1 the sum exceeds the wall time of the whole).

    ``run_verb(argv) -> exit status`` runs an argument-list stage: the ``rrpo`` dispatcher
    (:func:`rrpo.cli.main`), handed in by the pipeline verb as ``args.dispatch`` because the
    dispatcher imports the pipeline verbs. ``force`` names stages to redo even when their
    ``.done`` marker exists. ``jobs`` > 1 runs the ``parallel`` stages as child processes
    (``command(argv)``, logs in ``log_dir``; module docstring)."""
    names = [s.name for s in stages]
    bad = sorted(set(force) - set(names))
    if bad:
        raise RrpoError(f"unknown {tag} stage(s) {bad} (stages: {', '.join(names)})")
    where = {n: k for k, n in enumerate(names)}
    for k, st in enumerate(stages):
        late = [nd for nd in st.needs if where.get(nd, len(names)) >= k]
        if late:
            raise RrpoError(f"{tag} stage '{st.name}' needs {late}, which are not stages before it")
    if jobs > 1 and log_dir is None:
        raise RrpoError(f"{tag}: parallel stages need a log folder")
    times: dict[str, float] = {}
    i = 0
    while i < len(stages):
        if jobs > 1 and stages[i].parallel and not callable(stages[i].action):
            j = i
            while j < len(stages) and stages[j].parallel and not callable(stages[j].action):
                j += 1
            times.update(_run_block(stages, i, j, force, tag, jobs, Path(log_dir), command))
            i = j
            continue
        st, n = stages[i], i + 1
        head = f"[{tag} {n}/{len(stages)}] {st.name}"
        i += 1
        marker = st.folder / ".done"
        if marker.exists() and st.name not in force:
            print(f"{head}: done earlier, skipped", flush=True)
            times[st.name] = 0.0
            continue
        print(f"{head}: {st.describe()}", flush=True)
        t0 = time.perf_counter()
        if callable(st.action):
            st.action()
        else:
            rc = run_verb(list(st.action))
            if rc != 0:
                raise RrpoError(
                    f"{tag} stage '{st.name}' failed (exit {rc}); fix the cause and run the same "
                    "command again: finished stages are kept"
                )
        times[st.name] = round(time.perf_counter() - t0, 1)
        _mark(st, times[st.name])
        print(f"{head}: {times[st.name]} s", flush=True)
    return times


def _mark(st: Stage, seconds: float) -> None:
    marker = st.folder / ".done"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"seconds": seconds}) + "\n")


def recorded_seconds(st: Stage) -> float | None:
    """The seconds ``st`` took when it was made, from its ``.done`` marker; None when it is not done
    or its marker predates the record (it then reads ``ok``)."""
    try:
        rec = json.loads((st.folder / ".done").read_text())
        return float(rec["seconds"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def stage_seconds(times: dict[str, float], stages: Sequence[Stage], earlier: dict[str, float]) -> dict[str, float]:
    """Seconds per stage of a pipeline that may have taken several invocations: this invocation's
    time where the stage ran now (``times`` > 0), else the time its marker recorded, else the time an
    earlier invocation's record gave (``earlier``), else 0.0."""
    by_name = {st.name: st for st in stages}
    out = {}
    for name, t in times.items():
        if t > 0:
            out[name] = t
            continue
        made = recorded_seconds(by_name[name]) if name in by_name else None
        out[name] = made if made is not None else earlier.get(name, 0.0)
    return out


def _run_block(
    stages: Sequence[Stage], i: int, j: int, force, tag: str, jobs: int, log_dir: Path, command
) -> dict[str, float]:
    """Stages ``i:j`` (all parallel argument-list stages), ``jobs`` at a time, each once its needs in
    the block are done. A failure lets the running stages finish, starts no new one, then raises."""
    times: dict[str, float] = {}
    block = {stages[k].name: k for k in range(i, j)}
    pending = list(range(i, j))
    done: set[str] = set()
    running: dict[str, tuple[subprocess.Popen, float, Path]] = {}
    failed: list[tuple[str, int, Path]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    total = len(stages)
    try:
        while pending or running:
            # start what is ready, in order
            for k in list(pending):
                if failed or len(running) >= jobs:
                    break
                st = stages[k]
                if any(nd in block and nd not in done for nd in st.needs):
                    continue
                pending.remove(k)
                head = f"[{tag} {k + 1}/{total}] {st.name}"
                if (st.folder / ".done").exists() and st.name not in force:
                    print(f"{head}: done earlier, skipped", flush=True)
                    times[st.name] = 0.0
                    done.add(st.name)
                    continue
                log = log_dir / f"{st.name}.log"
                print(f"{head}: {st.describe()}  (in a child process; log: {log})", flush=True)
                with open(log, "w", encoding="utf-8") as f:
                    f.write("$ " + shlex.join(command(list(st.action))) + "\n")
                    f.flush()
                    proc = subprocess.Popen(
                        command(list(st.action)), stdout=f, stderr=subprocess.STDOUT, env=one_thread_env()
                    )
                running[st.name] = (proc, time.perf_counter(), log)
            if not pending and not running:
                break
            if failed and not running:
                break
            time.sleep(0.2)
            for name, (proc, t0, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                k = block[name]
                head = f"[{tag} {k + 1}/{total}] {name}"
                if rc != 0:
                    failed.append((name, rc, log))
                    print(f"{head}: failed (exit {rc}); log: {log}", flush=True)
                    continue
                done.add(name)
                times[name] = round(time.perf_counter() - t0, 1)
                _mark(stages[k], times[name])
                print(f"{head}: {times[name]} s", flush=True)
    except BaseException:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
        raise
    if failed:
        name, rc, log = failed[0]
        tail = _last_error_line(log)
        raise RrpoError(
            f"{tag} stage '{name}' failed (exit {rc}{': ' + tail if tail else ''}); its log: {log}; fix the "
            "cause and run the same command again: finished stages are kept"
        )
    return times


def _last_error_line(log: Path) -> str:
    """The child's one-line ``rrpo: error: ...`` message, if it printed one."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln for ln in lines if ln.startswith("rrpo: error:")]
    return errs[-1][len("rrpo: error: ") :] if errs else ""
