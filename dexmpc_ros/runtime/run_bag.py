"""
The episodes, checkpoint swaps and diagnostics of a run, read from its bag.

The boundary rule of episodes, the success rules and where swap times come from are
described in runtime/report.py's docstring. The records are those of
runtime/run_records.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.data.bag_reader import (Stamped, bag_info, episodes, joint_state_series,
                                        read_bag, resolve_topics, split_states, split_ticks)
from dexmpc_ros.learning.store import HISTORY_FILE, CheckpointStore, Entry
from dexmpc_ros.runtime.episode_record import EpisodeRecord
from dexmpc_ros.runtime.run_records import (SUCCESS_RULES, Group, SuccessRule, Swap, load_spec,
                                            node_names, node_params)

_SWAP_LINE = r'\[(\d+(?:\.\d+)?)\] \[{name}\]: now planning with (.+?)\s*$'


def read_run_bag(bag_dir: Path) -> dict[str, list[Stamped]]:
    """
    The report's topics of a run's bag, under their relative names.

    Keys: ``episode``, ``task_state``, ``reward`` (whichever the bag has; an ambiguous name
    raises) and ``diagnostics`` (every ``.../diagnostics`` topic, merged in time order).

    Raises:
        BagError: a missing or corrupt bag, naming the file.
    """
    info = bag_info(bag_dir)
    wanted = [name for name in ('episode', 'episode_start', 'task_state', 'reward')
              if any(t == '/' + name or t.endswith('/' + name) for t in info.topics)]
    resolved = resolve_topics(info.topics, wanted)
    diagnostics = [t for t in info.topics if t.endswith('/diagnostics')]
    bag = read_bag(bag_dir, [*resolved.values(), *diagnostics], info=info)
    out = {name: bag[topic] for name, topic in resolved.items()}
    out['diagnostics'] = sorted((item for t in diagnostics for item in bag[t]),
                                key=lambda item: item[0])
    return out


def diagnostics_of(messages: Sequence[Stamped], node: str) -> list[tuple[int, dict[str, str]]]:
    """``(bag time, key -> value)`` of every diagnostics status a node published."""
    out = []
    for t, msg in messages:
        for status in msg.status:
            if status.name == node:
                out.append((t, {kv.key: kv.value for kv in status.values}))
    return out


def number(values: dict[str, str], key: str) -> float:
    """A diagnostics value as a float (NaN when missing or not a number)."""
    try:
        return float(values[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def planning_windows(mpc: Sequence[tuple[int, dict[str, str]]]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """p50/p99 per diagnostics message; NaN while exploring or before the first plan."""
    p50 = np.array([number(v, 'plan_ms_p50') for _, v in mpc])
    p99 = np.array([number(v, 'plan_ms_p99') for _, v in mpc])
    idle = np.array([v.get('exploring') == 'True' for _, v in mpc]) | ~(p50 > 0)
    p50[idle] = np.nan
    p99[idle] = np.nan
    return p50, p99


def swaps_from_log(log_path: Path, node: str) -> list[Swap]:
    """The mpc node's ``now planning with`` lines (wall clock) from its log."""
    try:
        text = log_path.read_text(errors='replace')
    except OSError:
        return []
    pattern = re.compile(_SWAP_LINE.format(name=re.escape(node)), re.MULTILINE)
    return [Swap(int(round(float(m.group(1)) * 1e9)), m.group(2))
            for m in pattern.finditer(text)]


def swaps_from_diagnostics(mpc: Sequence[tuple[int, dict[str, str]]]) -> list[Swap]:
    """Changes of the mpc node's ``checkpoint`` diagnostics value (bag time)."""
    swaps, current = [], '(none)'
    for t, values in mpc:
        checkpoint = values.get('checkpoint', '(none)')
        if checkpoint != current and checkpoint != '(none)':
            swaps.append(Swap(t, checkpoint))
        current = checkpoint
    return swaps


def planning_swaps(run_dir: Path, spec: dict[str, Any],
                   mpc: Sequence[tuple[int, dict[str, str]]]) -> list[Swap]:
    """The mpc node's checkpoint swaps in bag time (see report.py's docstring)."""
    names = node_names(spec, 'mpc')
    if not names:
        return []
    if not spec.get('use_sim_time', False):
        swaps = swaps_from_log(run_dir / 'logs' / f'{names[0]}.log', names[0])
        if swaps:
            return swaps
    return swaps_from_diagnostics(mpc)


def episode_records(bag: dict[str, list[Stamped]], rule: SuccessRule | None,
                    swaps: Sequence[Swap] = (), episode_steps: int = 0
                    ) -> list[EpisodeRecord]:
    """
    The finished episodes of a bag (see report.py's docstring for the boundary rule).

    Args:
        bag: as :func:`read_run_bag` returns; needs ``episode``.
        rule: success rule, or None for returns only.
        swaps: checkpoint swaps in bag time, oldest first.
        episode_steps: the twin's steps per episode (0: unknown); a shorter first episode
            is marked partial.

    Raises:
        BagError: no ``episode`` topic, or the rule's entry missing from ``task_state``.
    """
    if 'episode' not in bag:
        raise BagError('the bag has no episode topic: no episodes to report')
    starts = episodes(bag)
    states = bag.get('task_state', [])
    series = joint_state_series(states, ())   # stamps and bag times only
    split = split_states(series, starts)
    rewards = bag.get('reward')
    reward_ns = np.array([t for t, _ in rewards or []], dtype=np.int64)
    reward_values = np.array([float(m.data) for _, m in rewards or []], dtype=np.float64)
    reward_episode = split_ticks(reward_ns, series, split)
    swap_ns = np.array([s.t_ns for s in swaps], dtype=np.int64)
    records: list[EpisodeRecord] = []
    for k in range(len(starts) - 1):
        rows = split.rows(k)
        step_states = int((~split.reset[rows]).sum())
        lo = int(np.searchsorted(reward_episode, k, side='left'))
        hi = int(np.searchsorted(reward_episode, k, side='right'))
        steps = hi - lo if rewards is not None else step_states
        if step_states <= 0 and (rewards is None or steps <= 0):
            continue
        final_error = success = None
        if rule is not None:
            if step_states <= 0:
                continue
            msg = states[rows[-1]][1]
            names = list(msg.name)
            if rule.entry not in names:
                raise BagError(f'task_state lacks {rule.entry!r} (the success rule); it has '
                               f'{names}')
            final_error = abs(float(msg.position[names.index(rule.entry)]))
            success = bool(rule(final_error))
        episode_return = float(reward_values[lo:hi].sum()) if rewards is not None \
            else math.nan
        swap = int(np.searchsorted(swap_ns, starts[k].start_ns, side='right'))
        records.append(EpisodeRecord(
            episode=starts[k].index, start_ns=starts[k].start_ns,
            end_ns=starts[k + 1].start_ns,
            steps=steps, episode_return=episode_return, final_error=final_error,
            success=success, swap=swap,
            checkpoint=swaps[swap - 1].checkpoint if swap else None,
            env_steps=hi if rewards is not None else 0,
            partial=(k == 0 and 0 < steps < episode_steps)))
    return records


def task_of(spec: dict[str, Any]) -> str | None:
    """The run's task: the robot node's ``task`` parameter, else the mpc node's."""
    for kind in ('robot', 'twin', 'mpc'):
        for name in node_names(spec, kind):
            task = node_params(spec, name).get('task')
            if isinstance(task, str) and task:
                return task
    return None


def run_episodes(run_dir: str | Path, rule: SuccessRule | None = None
                 ) -> list[EpisodeRecord]:
    """
    The finished episodes of a run folder, with the checkpoint each was planned with.

    Args:
        run_dir: the run folder.
        rule: success rule; default the one of the run's task (None: returns only).

    Raises:
        ConfigError: not a run folder. BagError: missing or corrupt bag, no episodes.
    """
    run_dir = Path(run_dir)
    spec = load_spec(run_dir)
    bag = read_run_bag(run_dir / 'bag')
    if rule is None:
        rule = SUCCESS_RULES.get(task_of(spec) or '')
    mpc = node_names(spec, 'mpc')
    mpc_diag = diagnostics_of(bag['diagnostics'], mpc[0]) if mpc else []
    return mark_evaluations(episode_records(bag, rule, planning_swaps(run_dir, spec, mpc_diag),
                                            episode_steps_of(spec)), spec)


def mark_evaluations(records: list[EpisodeRecord], spec: dict[str, Any]
                     ) -> list[EpisodeRecord]:
    """Flag the planned episodes the mpc node ran without action noise (its eval_every)."""
    mpc = node_names(spec, 'mpc')
    every = node_params(spec, mpc[0]).get('eval_every', 0) if mpc else 0
    if not (isinstance(every, int) and not isinstance(every, bool) and every > 0):
        return records
    return [replace(r, evaluation=r.planned and r.episode % every == 0) for r in records]


def episode_steps_of(spec: dict[str, Any]) -> int:
    for name in node_names(spec, 'robot') + node_names(spec, 'twin'):
        value = node_params(spec, name).get('episode_steps')
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def group_episodes(records: Sequence[EpisodeRecord], spec: dict[str, Any]) -> list[Group]:
    """Consecutive episodes with the same swap in force, in order."""
    mpc = node_names(spec, 'mpc')
    explores = bool(node_params(spec, mpc[0]).get('explore', False)) if mpc else False
    groups: list[Group] = []
    for record in records:
        if not groups or groups[-1].episodes[-1].swap != record.swap:
            if record.checkpoint is not None:
                mode = 'plan'
            elif not mpc:
                mode = 'no mpc'
            else:
                mode = 'explore' if explores else 'wait'
            groups.append(Group(len(groups), record.checkpoint, mode))
        groups[-1].episodes.append(record)
    return groups


def read_checkpoints(run_dir: Path) -> list[Entry]:
    """The learner's checkpoint history (empty when the run has none)."""
    if not (run_dir / 'models' / HISTORY_FILE).is_file():
        return []
    return CheckpointStore(run_dir / 'models').entries
