"""Run a pipeline of named stages, skipping those finished earlier (``rrpo demo``, ``rrpo experiment``).

A stage is an ``rrpo`` argument list run in-process (so a pipeline is also a worked example of the
commands) or a Python callable. Each stage owns a folder; a ``.done`` marker written there after
success makes a rerun skip it, so an interrupted pipeline resumes at the stage that failed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rrpo.errors import ConfigError, RrpoError

Action = Sequence[str] | Callable[[], None]


@dataclass
class Stage:
    name: str
    folder: Path
    action: Action

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


def run_stages(
    stages: Sequence[Stage], run_verb: Callable[[list[str]], int], force: set[str] = frozenset(), tag: str = "stage"
) -> dict[str, float]:
    """Run ``stages`` in order; returns seconds per stage (0.0 for a skipped one).

    ``run_verb(argv) -> exit status`` runs an argument-list stage: the ``rrpo`` dispatcher
    (:func:`rrpo.cli.main`), handed in by the pipeline verb as ``args.dispatch`` because the
    dispatcher imports the pipeline verbs. ``force`` names stages to redo even when their
    ``.done`` marker exists."""
    names = [s.name for s in stages]
    bad = sorted(set(force) - set(names))
    if bad:
        raise RrpoError(f"unknown {tag} stage(s) {bad} (stages: {', '.join(names)})")
    times: dict[str, float] = {}
    for n, st in enumerate(stages, 1):
        head = f"[{tag} {n}/{len(stages)}] {st.name}"
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
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("ok\n")
        times[st.name] = round(time.perf_counter() - t0, 1)
        print(f"{head}: {times[st.name]} s", flush=True)
    return times
