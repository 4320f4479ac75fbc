"""
The report of a run: what it did, read back from its run folder.

``dexmpc report <run>`` writes it; ``dexmpc up`` writes it by itself at the end of a run
that has an ``mpc`` or ``learner`` node. Inputs, all in the run folder (runtime/runner.py)::

    spec.yaml              experiment, robot, nodes and their parameters
    logs/<node>.log        errors and crashes; the mpc node's "now planning with" lines
    bag/                   /episode, /task_state, /reward, /diagnostics (any namespace)
    models/history.json    the learner's checkpoint store (models/store.py)
    report/outcome.json    written by ``dexmpc up``: exit codes, git commit, durations

Output, in ``<run>/report/``: ``report.md`` and ``report.html`` with the same content (the
HTML needs no network: inline style, the PNGs beside it referenced by relative path, so
the folder is the unit to copy), and the PNGs ``returns.png`` (return and success per
episode against env steps, coloured exploring/planning, a line at each checkpoint swap),
``validation.png`` (validation score of every checkpoint) and ``planning.png`` (the mpc
node's planning time and missed ticks over the run). A plot without data is left out.

Episodes. The twin publishes, at a reset, ``episode``, ``episode_start`` (stamped with the
new episode's first state) and then that first ``task_state`` (no ``reward``), right
after the previous episode's last ``task_state`` and ``reward``. The recorder receives
these on separate subscriptions, so their bag times race (in a 90 s hand run, 27 of 45
last states and 30 of 45 last rewards were stamped just *after* the ``episode`` message).
States are therefore split by header stamp with the reader's
:func:`~dexmpc_ros.data.bag_reader.split_states`, and each ``reward`` (no header) goes with
the step state received nearest to it (:func:`~dexmpc_ros.data.bag_reader.split_ticks`).
Bags recorded before the twin published ``episode_start`` fall back to bag time, each
boundary moved half a control tick past the ``episode`` message; that assumes automatic
resets (a reset by the ``reset_episode`` service starts a tick, so its first step's state
comes with it and the previous episode's last state is misread as the new one's).
Episode ``k`` runs from its reset state to the next episode's; the last, unfinished
episode and anything before the first episode are left out. ``steps`` counts its
rewards (env steps); the first episode is *partial* when it has fewer steps than the
twin's ``episode_steps`` (the recorder joined late) and is then left out of every
statistic.

Success is per task (:data:`SUCCESS_RULES`): valve turning succeeds when the final
``|angle_error| < 0.25`` rad (PDDM, papers.md §7.5). Tasks without a rule get returns only.

Learner iterations. Episodes are grouped by the checkpoint the mpc node was planning with
when they started; a group ends at the next swap. Swap times come from the mpc node's log
(``now planning with <path>``, wall clock) unless the run used simulated time (the bag is
then in simulated time): then from the ``checkpoint`` value of its diagnostics in the bag,
up to one diagnostics period (1 s) late.

Planner timing. The mpc node publishes, once a second, the p50/p99 planning time over its
last 200 ticks, its missed-tick count and whether it explores; single ticks are not
recorded, so the report shows those windows over time.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dexmpc_ros.core.errors import BagError, ConfigError
from dexmpc_ros.core.files import write_text_atomic
from dexmpc_ros.data.bag_reader import (Stamped, bag_info, episodes, joint_state_series,
                                        read_bag, resolve_topics, split_states, split_ticks)
from dexmpc_ros.models.store import HISTORY_FILE, CheckpointStore, Entry

REPORT_DIR = 'report'
OUTCOME_FILE = 'outcome.json'
#: node kinds whose runs ``dexmpc up`` reports on by itself
REPORTED_KINDS = ('mpc', 'learner')
PLOTS = ('returns.png', 'validation.png', 'planning.png')
#: log lines that mean a node did not end normally
CRASH_MARKERS = ('Traceback (most recent call last)', 'configuration error:', '[FATAL]',
                 'Segmentation fault')
_SWAP_LINE = r'\[(\d+(?:\.\d+)?)\] \[{name}\]: now planning with (.+?)\s*$'
_MODE_COLORS = {'explore': 'C0', 'plan': 'C1', 'wait': 'C7', 'no mpc': 'C2'}


@dataclass(frozen=True)
class SuccessRule:
    """An episode succeeds when ``|task_state[entry]| < threshold`` at its last step."""

    entry: str
    threshold: float

    def __call__(self, value: float) -> bool:
        """The verdict for the entry's value at the last step."""
        return abs(value) < self.threshold


#: task name (the twin's ``task`` parameter) -> success rule
SUCCESS_RULES: dict[str, SuccessRule] = {'valve': SuccessRule('angle_error', 0.25)}


@dataclass(frozen=True)
class Swap:
    """The mpc node started planning with ``checkpoint`` at bag time ``t_ns``."""

    t_ns: int
    checkpoint: str


@dataclass(frozen=True)
class EpisodeRecord:
    """
    One finished episode.

    Attributes:
        episode: the twin's episode number.
        start_ns: bag time of its ``episode`` message.
        end_ns: bag time of the next one.
        steps: env steps (rewards received in it).
        episode_return: sum of its rewards (NaN without a ``reward`` topic).
        final_error: ``|task_state[rule.entry]|`` at its last step (None without a rule).
        success: the rule's verdict (None without a rule).
        swap: swaps before it started (0: no model yet); indexes the run's swap list.
        checkpoint: the checkpoint in force when it started (None: no model yet).
        env_steps: env steps recorded up to its end, counted over the whole bag.
        partial: the recording started during it (left out of statistics).
        evaluation: planned with the mpc node's ``action_noise`` off (its ``eval_every``
            divides the episode number).
    """

    episode: int
    start_ns: int
    end_ns: int
    steps: int
    episode_return: float
    final_error: float | None
    success: bool | None
    swap: int
    checkpoint: str | None
    env_steps: int
    partial: bool = False
    evaluation: bool = False

    @property
    def planned(self) -> bool:
        """True when a learned model was in force at its start."""
        return self.checkpoint is not None


@dataclass
class Group:
    """Consecutive episodes planned with one checkpoint (one learner iteration)."""

    index: int
    checkpoint: str | None
    mode: str
    episodes: list[EpisodeRecord] = field(default_factory=list)

    @property
    def counted(self) -> list[EpisodeRecord]:
        """The episodes that enter the statistics (not partial)."""
        return [e for e in self.episodes if not e.partial]

    @property
    def mean_return(self) -> float:
        """Mean return of the counted episodes (NaN if none)."""
        values = [e.episode_return for e in self.counted]
        return float(np.mean(values)) if values else math.nan

    @property
    def success_rate(self) -> float | None:
        """Fraction of counted episodes that succeeded (None without a rule or episode)."""
        verdicts = [e.success for e in self.counted if e.success is not None]
        return float(np.mean(verdicts)) if verdicts else None

    @property
    def env_steps(self) -> int:
        """Env steps recorded up to the end of its last episode."""
        return self.episodes[-1].env_steps if self.episodes else 0


@dataclass
class RunOutcome:
    """
    What ``dexmpc up`` knew at the end of a run (``report/outcome.json``).

    Attributes:
        exit_code: the run's exit code.
        failed_node: the node that died or stopped badly, if any.
        reason: the runner's explanation of a failure.
        interrupted: stopped by Ctrl-C/SIGTERM before the duration.
        duration_s: the requested duration [s].
        elapsed_s: wall time from start to stop [s].
        git_commit: the commit checked out when the run started (None: unknown).
        node_exit_codes: each node's process exit code.
    """

    exit_code: int
    failed_node: str | None = None
    reason: str = ''
    interrupted: bool = False
    duration_s: float | None = None
    elapsed_s: float | None = None
    git_commit: str | None = None
    node_exit_codes: dict[str, int | None] = field(default_factory=dict)


@dataclass
class NodeVerdict:
    """How one node ended: its exit code (if known) and what its log says."""

    name: str
    kind: str
    exit_code: int | None
    crash: str = ''
    errors: int = 0
    last_error: str = ''
    has_log: bool = True

    @property
    def clean(self) -> bool | None:
        """True/False from the exit code; without one, False on a crash in the log."""
        if self.exit_code is not None:
            return self.exit_code in (0, -2)  # -2: stopped by SIGINT, as the runner does
        return False if self.crash else None


@dataclass
class Report:
    """
    Everything the report shows, before rendering.

    ``mpc``, ``safety`` and ``learner`` are those nodes' diagnostics, ``(bag time,
    key -> value)`` in time order; ``reward_ns`` the bag times of every reward (the env
    step axis); ``notes`` what could not be shown and why.
    """

    run_dir: Path
    spec: dict[str, Any]
    outcome: RunOutcome | None
    nodes: list[NodeVerdict]
    task: str | None
    rule: SuccessRule | None
    bag_start_ns: int | None
    bag_duration_s: float | None
    episodes: list[EpisodeRecord]
    swaps: list[Swap]
    groups: list[Group]
    checkpoints: list[Entry]
    mpc: list[tuple[int, dict[str, str]]]
    safety: list[tuple[int, dict[str, str]]]
    learner: list[tuple[int, dict[str, str]]]
    reward_ns: np.ndarray
    notes: list[str] = field(default_factory=list)


# Run folder --------------------------------------------------------------------------------
def load_spec(run_dir: str | Path) -> dict[str, Any]:
    """
    The run's resolved experiment (``spec.yaml``).

    Raises:
        ConfigError: no such folder, or no readable spec.yaml with a robot and nodes
            (the message names the path).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f'{run_dir}: no such run folder')
    path = run_dir / 'spec.yaml'
    try:
        spec = yaml.safe_load(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ConfigError(f'{path}: missing; {run_dir} is not a dexmpc run folder') from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f'{path}: unreadable: {exc}') from exc
    nodes = spec.get('nodes') if isinstance(spec, dict) else None
    if not isinstance(nodes, dict) or not isinstance(spec.get('robot'), str) or \
            not all(isinstance(n, dict) and isinstance(n.get('kind'), str)
                    for n in nodes.values()):
        raise ConfigError(f'{path}: not a resolved experiment (needs robot and nodes with '
                          f'a kind each)')
    spec.setdefault('name', run_dir.name)
    return spec


def node_names(spec: dict[str, Any], kind: str) -> list[str]:
    """Names of the spec's nodes of one kind (``robot`` matches twins and drivers)."""
    return [name for name, node in spec['nodes'].items() if node['kind'] == kind]


def node_params(spec: dict[str, Any], name: str | None) -> dict[str, Any]:
    """A node's parameters as written in the spec ({} for None or none)."""
    if name is None:
        return {}
    params = spec['nodes'][name].get('parameters')
    return params if isinstance(params, dict) else {}


def has_reported_node(kinds: Iterable[str]) -> bool:
    """True when a run with nodes of these kinds gets a report at the end of ``dexmpc up``."""
    return any(kind in REPORTED_KINDS for kind in kinds)


def write_outcome(run_dir: str | Path, outcome: RunOutcome) -> Path:
    """Save what ``dexmpc up`` knows about the run's end (``report/outcome.json``)."""
    folder = Path(run_dir) / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / OUTCOME_FILE
    text = json.dumps(asdict(outcome), indent=2) + '\n'
    write_text_atomic(path, lambda f: f.write(text))
    return path


def read_outcome(run_dir: str | Path) -> RunOutcome | None:
    """The saved outcome, or None when there is none (runs not started by ``dexmpc up``)."""
    path = Path(run_dir) / REPORT_DIR / OUTCOME_FILE
    if not path.exists():
        return None
    try:
        return RunOutcome(**json.loads(path.read_text(encoding='utf-8')))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f'{path}: unreadable run outcome: {exc}') from exc


def git_commit(start: str | Path | None = None) -> str | None:
    """
    The commit checked out where ``start`` (default: this package) lives, or None.

    Read from ``.git`` (HEAD, the ref file or packed-refs; worktrees too) instead of
    running git, which may not be installed where the robot runs.
    """
    here = Path(start or __file__).resolve()
    for folder in (here, *here.parents):
        dot = folder / '.git'
        try:
            if dot.is_file():
                text = dot.read_text().strip()
                if not text.startswith('gitdir:'):
                    return None
                return _head_commit((folder / text[len('gitdir:'):].strip()).resolve())
            if dot.is_dir():
                return _head_commit(dot)
        except OSError:
            return None
    return None


def _head_commit(git_dir: Path) -> str | None:
    head = (git_dir / 'HEAD').read_text().strip()
    if not head.startswith('ref:'):
        return head if re.fullmatch(r'[0-9a-f]{40,64}', head) else None
    ref = head[len('ref:'):].strip()
    common = git_dir
    if (git_dir / 'commondir').is_file():  # a worktree keeps its branches in the main repo
        common = (git_dir / (git_dir / 'commondir').read_text().strip()).resolve()
    for root in dict.fromkeys((git_dir, common)):
        if (root / ref).is_file():
            return (root / ref).read_text().strip() or None
        packed = root / 'packed-refs'
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


def node_verdicts(run_dir: Path, spec: dict[str, Any],
                  outcome: RunOutcome | None) -> list[NodeVerdict]:
    """Each node of the spec with its exit code (from the outcome) and its log's errors."""
    verdicts = []
    codes = outcome.node_exit_codes if outcome is not None else {}
    for name, node in spec['nodes'].items():
        verdict = NodeVerdict(name, node['kind'], codes.get(name))
        try:
            lines = (run_dir / 'logs' / f'{name}.log').read_text(errors='replace').splitlines()
        except OSError:
            lines, verdict.has_log = [], False
        for line in lines:
            if not verdict.crash and any(marker in line for marker in CRASH_MARKERS):
                verdict.crash = line.strip()[:160]
            if line.startswith('[ERROR]'):
                verdict.errors += 1
                verdict.last_error = line.strip()[:160]
        tail = [line.strip()[:160] for line in lines if line.strip()][-1:]
        if verdict.crash and tail and tail[0] != verdict.crash:  # the exception's message
            verdict.crash = f'{verdict.crash} ... {tail[0]}'
        verdicts.append(verdict)
    return verdicts


# Bag ---------------------------------------------------------------------------------------
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
    """The mpc node's checkpoint swaps in bag time (see the module docstring)."""
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
    The finished episodes of a bag (see the module docstring for the boundary rule).

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
                                            _episode_steps(spec)), spec)


def mark_evaluations(records: list[EpisodeRecord], spec: dict[str, Any]
                     ) -> list[EpisodeRecord]:
    """Flag the planned episodes the mpc node ran without action noise (its eval_every)."""
    mpc = node_names(spec, 'mpc')
    every = node_params(spec, mpc[0]).get('eval_every', 0) if mpc else 0
    if not (isinstance(every, int) and not isinstance(every, bool) and every > 0):
        return records
    return [replace(r, evaluation=r.planned and r.episode % every == 0) for r in records]


def _episode_steps(spec: dict[str, Any]) -> int:
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


# Building ----------------------------------------------------------------------------------
def build_report(run_dir: str | Path, outcome: RunOutcome | None = None) -> Report:
    """
    Read a run folder into a :class:`Report` (no files written).

    Args:
        run_dir: the run folder.
        outcome: what ``dexmpc up`` knew; default ``report/outcome.json`` if present.

    Raises:
        ConfigError: not a run folder (names the path). BagError: a corrupt bag.
        CheckpointError: an unreadable models/history.json.
    """
    run_dir = Path(run_dir)
    spec = load_spec(run_dir)
    outcome = outcome if outcome is not None else read_outcome(run_dir)
    task = task_of(spec)
    rule = SUCCESS_RULES.get(task or '')
    notes: list[str] = []
    bag_dir = run_dir / 'bag'
    bag: dict[str, list[Stamped]] = {'diagnostics': []}
    start_ns = duration_s = None
    if bag_dir.exists():
        info = bag_info(bag_dir)
        start_ns, duration_s = info.start_ns, info.duration_ns * 1e-9
        bag = read_run_bag(bag_dir)
    else:
        notes.append(f'no bag in {bag_dir}: episodes, timing and safety are not available')
    names = {kind: node_names(spec, kind) for kind in ('mpc', 'safety', 'learner')}
    for kind, found in names.items():
        if len(found) > 1:
            notes.append(f'several {kind} nodes ({", ".join(found)}): only {found[0]} shown')
    mpc, safety, learner = (diagnostics_of(bag['diagnostics'], found[0]) if found else []
                            for found in names.values())
    swaps = planning_swaps(run_dir, spec, mpc)
    episodes: list[EpisodeRecord] = []
    if 'episode' in bag:
        if rule is not None and 'task_state' not in bag:
            notes.append(f'no task_state topic: success of {task} is not available')
            rule = None
        episodes = mark_evaluations(episode_records(bag, rule, swaps, _episode_steps(spec)),
                                    spec)
    elif bag_dir.exists():
        notes.append('the bag has no episode topic: no per-episode results')
    if task and rule is None and 'task_state' in bag:
        notes.append(f'task {task!r} has no success rule: returns only')
    reward_ns = np.array([t for t, _ in bag.get('reward', [])], dtype=np.int64)
    return Report(run_dir, spec, outcome, node_verdicts(run_dir, spec, outcome), task, rule,
                  start_ns, duration_s, episodes, swaps, group_episodes(episodes, spec),
                  read_checkpoints(run_dir), mpc, safety, learner, reward_ns, notes)


# Writing -----------------------------------------------------------------------------------
def write_report(run_dir: str | Path, outcome: RunOutcome | None = None) -> Path:
    """
    Build the report of a run and write it into ``<run>/report/``.

    Args:
        run_dir: the run folder.
        outcome: saved to ``report/outcome.json`` first when given (``dexmpc up``).

    Returns:
        The path of ``report.html``.

    Raises:
        as :func:`build_report`, and OSError when the folder cannot be written.
    """
    run_dir = Path(run_dir)
    load_spec(run_dir)  # a missing or foreign folder fails before anything is written
    if outcome is not None:
        write_outcome(run_dir, outcome)
    report = build_report(run_dir, outcome)
    folder = run_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*PLOTS, 'report.md', 'report.html'):
        (folder / name).unlink(missing_ok=True)  # a plot without data now must not linger
    plots = _plot_all(report, folder)
    blocks = _blocks(report, plots)
    title = f'dexmpc run report: {report.spec["name"]}'
    for name, text in (('report.md', render_markdown(blocks)),
                       ('report.html', render_html(blocks, title))):
        write_text_atomic(folder / name, lambda f, text=text: f.write(text), fsync=False)
        (folder / name).chmod(0o644)  # the temporary file it was renamed from is 0600
    return folder / 'report.html'


# Content -----------------------------------------------------------------------------------
Block = tuple  # ('h', level, text) | ('p', text) | ('ul', [items]) | ('table', head, rows)
#              | ('img', file, alt)


def _fmt(value: float | None, spec: str = '.1f') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


def _pct(value: float | None) -> str:
    return '-' if value is None else f'{value:.0%}'


def _name(path: str | None) -> str:
    return Path(path).name if path else '-'


def _clock(unix_s: float | None) -> str:
    return '-' if unix_s is None else datetime.fromtimestamp(unix_s).strftime(
        '%Y-%m-%d %H:%M:%S')


def _mean_success(records: Sequence[EpisodeRecord]) -> float | None:
    verdicts = [r.success for r in records if not r.partial and r.success is not None]
    return float(np.mean(verdicts)) if verdicts else None


def _counter_at(series: Sequence[tuple[int, dict[str, str]]], key: str,
                times_ns: Sequence[int]) -> np.ndarray:
    """A cumulative diagnostics counter at each bag time (0 before its first value)."""
    stamps = np.array([t for t, v in series if not math.isnan(number(v, key))], np.int64)
    values = np.array([number(v, key) for _, v in series if not math.isnan(number(v, key))])
    index = np.searchsorted(stamps, np.asarray(times_ns, dtype=np.int64), side='right') - 1
    return np.where(index >= 0, values[np.maximum(index, 0)] if values.size else 0.0, 0.0)


def _summary(report: Report) -> list[Block]:
    spec, outcome = report.spec, report.outcome
    described = f' - {spec["description"]}' if spec.get('description') else ''
    items = [f'experiment: {spec["name"]}{described}',
             f'robot: {spec["robot"]} ({spec.get("backend", "sim")}), task: '
             f'{report.task or "-"}, use_sim_time: {bool(spec.get("use_sim_time", False))}']
    if report.bag_start_ns is not None:
        items.append(f'recorded: {_fmt(report.bag_duration_s)} s of simulated time'
                     if spec.get('use_sim_time') else
                     f'recorded: {_fmt(report.bag_duration_s)} s from '
                     f'{_clock(report.bag_start_ns * 1e-9)}')
    if outcome is not None:
        how = ('interrupted (Ctrl-C/SIGTERM)' if outcome.interrupted
               else f'node {outcome.failed_node} failed' if outcome.failed_node
               else 'ran to its duration')
        items.append(f'run: {how}; requested {_fmt(outcome.duration_s, "g")} s, elapsed '
                     f'{_fmt(outcome.elapsed_s)} s; exit code {outcome.exit_code}')
        items.append(f'git commit: {outcome.git_commit or "unknown (not a git checkout)"}')
    else:
        items.append('run outcome and git commit: not recorded (no report/outcome.json; '
                     '`dexmpc up` writes it)')
    counted = [r for r in report.episodes if not r.partial]
    explored = [r for r in counted if not r.planned]
    planned = [r for r in counted if r.planned]
    if report.episodes:
        line = (f'episodes: {len(counted)} counted ({len(explored)} before the first model, '
                f'{len(planned)} planned), {report.episodes[-1].env_steps} env steps')
        if report.rule is not None:
            line += (f'; success (|{report.rule.entry}| < {report.rule.threshold:g}): '
                     f'before the first model {_pct(_mean_success(explored))}, planned '
                     f'{_pct(_mean_success(planned))}, last 20 planned '
                     f'{_pct(_mean_success(planned[-20:]))}')
            evaluation = [r for r in planned if r.evaluation]
            if evaluation:
                line += (f'; evaluation episodes (no action noise): {len(evaluation)}, '
                         f'{_pct(_mean_success(evaluation))}, last 20 '
                         f'{_pct(_mean_success(evaluation[-20:]))}')
        items.append(line)
    if report.checkpoints:
        accepted = sum(e.accepted for e in report.checkpoints)
        items.append(f'checkpoints: {len(report.checkpoints)} proposed, {accepted} accepted, '
                     f'{len(report.checkpoints) - accepted} refused, '
                     f'{sum(e.rolled_back for e in report.checkpoints)} rolled back; '
                     f'{len(report.swaps)} swaps by the mpc node')
    blocks: list[Block] = [('h', 1, f'Run report: {spec["name"]}'), ('p', str(report.run_dir)),
                           ('ul', items)]
    for note in report.notes:
        blocks.append(('p', f'Note: {note}'))
    return blocks


def _nodes(report: Report) -> list[Block]:
    rows = []
    for v in report.nodes:
        if v.exit_code is None:
            exit_text = 'not recorded'
        else:
            exit_text = f'{v.exit_code}' + (' (SIGINT)' if v.exit_code == -2 else '')
        verdict = {True: 'clean', False: 'NOT CLEAN', None: 'no crash logged'}[v.clean]
        log = (f'crash: {v.crash}' if v.crash else 'no log' if not v.has_log
               else f'{v.errors} errors, last: {v.last_error}' if v.errors else 'no errors')
        rows.append([v.name, v.kind, exit_text, verdict, log])
    blocks: list[Block] = [('h', 2, 'Nodes'),
                           ('table', ['node', 'kind', 'exit code', 'ended', 'log'], rows)]
    if report.outcome is not None and report.outcome.reason:
        blocks.append(('p', f'Runner: {report.outcome.reason}'))
    return blocks


def _groups(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Episodes per learner iteration')]
    if not report.groups:
        return blocks + [('p', 'No finished episode in the bag.')]
    blocks.append(('p', 'One row per checkpoint in force: the episodes that started while '
                        'the mpc node planned with it (before the first model: exploring '
                        'or waiting). Partial episodes are not counted. Safety counts are '
                        'the supervisor\'s clamped/blocked/held commands during the group '
                        '(from its 1 Hz diagnostics).'))
    head = ['#', 'checkpoint', 'mode', 'episodes', 'count', 'mean return', 'success',
            'env steps so far', 'safety clamp/block/hold']
    rows = []
    bounds = [t for g in report.groups for t in (g.episodes[0].start_ns, g.episodes[-1].end_ns)]
    counts = {key: _counter_at(report.safety, key, bounds).reshape(-1, 2)
              for key in ('clamped', 'blocked', 'held')}
    for g in report.groups:
        safety = '-' if not report.safety else '/'.join(
            f'{np.diff(counts[key][g.index])[0]:g}' for key in counts)
        rows.append([str(g.index), _name(g.checkpoint), g.mode,
                     f'{g.episodes[0].episode}-{g.episodes[-1].episode}', str(len(g.counted)),
                     _fmt(g.mean_return), _pct(g.success_rate), str(g.env_steps), safety])
    blocks.append(('table', head, rows))
    if 'returns.png' in plots:
        blocks.append(('img', 'returns.png', plots['returns.png']))
    blocks.append(('h', 2, 'Episodes'))
    head = ['episode', 'group', 'mode', 'steps', 'return', 'env steps']
    if report.rule is not None:
        head += [f'final |{report.rule.entry}|', 'success']
    rows = []
    for g, r in ((g, r) for g in report.groups for r in g.episodes):
        row = [str(r.episode) + (' (partial)' if r.partial else ''), str(g.index), g.mode,
               str(r.steps), _fmt(r.episode_return), str(r.env_steps)]
        if report.rule is not None:
            row += [_fmt(r.final_error, '.3f'), 'yes' if r.success else 'no']
        rows.append(row)
    blocks.append(('table', head, rows))
    return blocks


def _checkpoints(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Model error per checkpoint')]
    if not report.checkpoints:
        return blocks + [('p', 'No models/history.json: the run trained no model.')]
    blocks.append(('p', 'score: the new model\'s mean H-step open-loop prediction error on '
                        'the held-out newest episodes, in state standard deviations (lower '
                        'is better); current: the model in use on the same episodes. A '
                        'checkpoint is accepted only if it beats the current one.'))
    planned = {}
    for r in report.episodes:
        if r.checkpoint is not None and not r.partial:
            planned[r.checkpoint] = planned.get(r.checkpoint, 0) + 1
    swapped = {}
    for s in report.swaps:
        swapped[s.checkpoint] = swapped.get(s.checkpoint, 0) + 1
    rows = []
    for e in report.checkpoints:
        m = e.metrics
        state = 'rolled back' if e.rolled_back else 'accepted' if e.accepted else 'refused'
        rows.append([_name(e.path), _clock(e.created), _fmt(m.get('score'), '.4g'),
                     _fmt(m.get('current_score'), '.4g'), str(m.get('horizon', '-')), state,
                     str(swapped.get(e.path, 0)), str(planned.get(e.path, 0)), e.reason])
    blocks.append(('table', ['checkpoint', 'created', 'score', 'current', 'H', 'decision',
                             'swapped in', 'episodes planned', 'reason'], rows))
    if report.learner:
        last = report.learner[-1][1]
        blocks.append(('p', f'Learner at the end: {last.get("iterations", "?")} trainings, '
                            f'last took {_fmt(number(last, "last_train_s"))} s'
                            + (f', last error: {last["last_error"]}'
                               if last.get('last_error') else '')))
    if 'validation.png' in plots:
        blocks.append(('img', 'validation.png', plots['validation.png']))
    return blocks


def _planner(report: Report, plots: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Planner timing')]
    if not report.mpc:
        return blocks + [('p', 'No mpc node diagnostics in the bag.')]
    p50, p99 = _planning_windows(report.mpc)
    last = report.mpc[-1][1]
    missed = number(last, 'missed_ticks')
    ticks = number(last, 'commands')
    items = [f'planning windows (200 ticks, 1 Hz): {int(np.sum(~np.isnan(p50)))}',
             f'p50 planning time: median {_fmt(_nanmedian(p50), ".2f")} ms, worst window '
             f'{_fmt(_nanmax(p50), ".2f")} ms',
             f'p99 planning time: median {_fmt(_nanmedian(p99), ".2f")} ms, worst window '
             f'{_fmt(_nanmax(p99), ".2f")} ms',
             f'missed ticks (> 1.5 periods apart): {_fmt(missed, "g")} of '
             f'{_fmt(ticks, "g")} commands; during checkpoint swaps: '
             f'{last.get("missed_in_swaps", "?")}',
             f'checkpoints swapped in: {last.get("swaps", "?")}, refused: '
             f'{last.get("refused", "?")}']
    if last.get('last_error'):
        items.append(f'last error: {last["last_error"]}')
    blocks.append(('ul', items))
    if 'planning.png' in plots:
        blocks.append(('img', 'planning.png', plots['planning.png']))
    return blocks


def _safety(report: Report) -> list[Block]:
    blocks: list[Block] = [('h', 2, 'Safety supervisor')]
    if not report.safety:
        return blocks + [('p', 'No safety node diagnostics in the bag.')]
    last = report.safety[-1][1]
    rows = [[key, last[key]] for key in ('state', 'passed', 'clamped', 'blocked', 'held',
                                         'estops') if key in last]
    rows += [[key, value] for key, value in last.items()
             if key.startswith('rule/') and number(last, key) > 0]
    if 'latency_us_p99' in last:
        rows.append(['filter p99 [us]', last['latency_us_p99']])
    blocks.append(('p', 'Counts since the start, from the last diagnostics message; '
                        'rule/<name>: commands each rule changed or stopped.'))
    blocks.append(('table', ['counter', 'value'], rows))
    if last.get('last_reason'):
        blocks.append(('p', f'Last reason: {last["last_reason"]}'))
    return blocks


def _blocks(report: Report, plots: dict[str, str]) -> list[Block]:
    return [*_summary(report), *_nodes(report), *_groups(report, plots),
            *_checkpoints(report, plots), *_planner(report, plots), *_safety(report)]


# Plots -------------------------------------------------------------------------------------
def _planning_windows(mpc: Sequence[tuple[int, dict[str, str]]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """p50/p99 per diagnostics message; NaN while exploring or before the first plan."""
    p50 = np.array([number(v, 'plan_ms_p50') for _, v in mpc])
    p99 = np.array([number(v, 'plan_ms_p99') for _, v in mpc])
    idle = np.array([v.get('exploring') == 'True' for _, v in mpc]) | ~(p50 > 0)
    p50[idle] = np.nan
    p99[idle] = np.nan
    return p50, p99


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.any(~np.isnan(values)) else math.nan


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.any(~np.isnan(values)) else math.nan


def _plot_all(report: Report, folder: Path) -> dict[str, str]:
    """Write the plots that have data; returns file name -> caption."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    plots = {}
    makers = (('returns.png', _plot_returns), ('validation.png', _plot_validation),
              ('planning.png', _plot_planning))
    for name, maker in makers:
        caption = maker(report, plt, folder / name)
        if caption:
            plots[name] = caption
    return plots


def _swap_steps(report: Report) -> list[tuple[int, str]]:
    """(env steps at the swap, checkpoint name) for swaps inside the recording."""
    if report.bag_start_ns is None or not report.reward_ns.size:
        return []
    return [(int(np.searchsorted(report.reward_ns, s.t_ns, side='right')), _name(s.checkpoint))
            for s in report.swaps if s.t_ns >= report.reward_ns[0]]


def _plot_returns(report: Report, plt: Any, path: Path) -> str:
    records = report.episodes
    if not records:
        return ''
    with_success = report.rule is not None
    by_steps = report.reward_ns.size > 0   # without rewards, episodes are the axis

    def x(chosen: Sequence[EpisodeRecord]) -> list[int]:
        return [r.env_steps if by_steps else r.episode for r in chosen]

    fig, axes = plt.subplots(2 if with_success else 1, 1, sharex=True, squeeze=False,
                             figsize=(9, 6 if with_success else 3.8))
    top = axes[0][0]
    for mode, color in _MODE_COLORS.items():
        chosen = [r for g in report.groups if g.mode == mode for r in g.episodes]
        if chosen:
            top.scatter(x(chosen), [r.episode_return for r in chosen],
                        s=16, c=color, label=mode,
                        edgecolors=['k' if r.partial else color for r in chosen])
    for g in report.groups:
        if g.counted:
            top.hlines(g.mean_return, x(g.counted)[0], x(g.counted)[-1], colors='k',
                       lw=1.5)
    top.set_ylabel('episode return')
    top.legend(loc='best', fontsize=8)
    if with_success:
        bottom = axes[1][0]
        for g in report.groups:
            bottom.scatter(x(g.counted), [float(bool(r.success)) for r in g.counted], s=10,
                           c=_MODE_COLORS[g.mode], alpha=0.6)
        for g in report.groups:
            if g.success_rate is not None:
                bottom.hlines(g.success_rate, x(g.counted)[0], x(g.counted)[-1],
                              colors='k', lw=2)
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_ylabel(f'success (|{report.rule.entry}| < {report.rule.threshold:g})')
    for ax in (row[0] for row in axes):
        for steps, name in _swap_steps(report):
            ax.axvline(steps, color='gray', ls=':', lw=1)
    for steps, name in _swap_steps(report):
        top.annotate(name, (steps, 1.0), xycoords=('data', 'axes fraction'), rotation=90,
                     fontsize=6, va='top', ha='right', color='gray')
    axes[-1][0].set_xlabel('env steps (recorded)' if by_steps else 'episode')
    top.set_title(f'{report.spec["name"]}: per episode (black: group mean; dotted: swaps)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Return and success per episode against env steps; dotted lines: checkpoint swaps.'


def _plot_validation(report: Report, plt: Any, path: Path) -> str:
    entries = report.checkpoints
    if not entries:
        return ''
    x = np.arange(1, len(entries) + 1)
    score = np.array([float(e.metrics.get('score', math.nan)) for e in entries])
    current = np.array([float(e.metrics.get('current_score', math.nan)) for e in entries])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    kinds = (('accepted', lambda e: e.accepted and not e.rolled_back, 'C2', 'o'),
             ('refused', lambda e: not e.accepted, 'C3', 'x'),
             ('rolled back', lambda e: e.rolled_back, 'C7', 's'))
    for label, test, color, marker in kinds:
        chosen = np.array([test(e) for e in entries])
        if chosen.any():
            ax.scatter(x[chosen], score[chosen], c=color, marker=marker, label=label, zorder=3)
    if np.any(~np.isnan(current)):
        ax.scatter(x, current, facecolors='none', edgecolors='k', marker='o', s=40,
                   label='model in use, same data', zorder=2)
    finite = score[np.isfinite(score)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale('log')
    ax.set_xticks(x)
    ax.set_xticklabels([_name(e.path) for e in entries], rotation=60, fontsize=7)
    ax.set_ylabel('held-out error (state stds)')
    ax.set_title('validation score per checkpoint (lower is better)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Validation score of every checkpoint the learner proposed.'


def _plot_planning(report: Report, plt: Any, path: Path) -> str:
    if not report.mpc:
        return ''
    t0 = report.bag_start_ns or report.mpc[0][0]
    t = np.array([(ts - t0) * 1e-9 for ts, _ in report.mpc])
    p50, p99 = _planning_windows(report.mpc)
    missed = np.array([number(v, 'missed_ticks') for _, v in report.mpc])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(t, p50, label='p50 (last 200 ticks)')
    ax.plot(t, p99, label='p99 (last 200 ticks)')
    period = _period_ms(report.spec)
    if period is not None:
        ax.axhline(period, color='C3', ls='--', lw=1, label='control period')
    ax.set_xlabel('run time [s] (bag)')
    ax.set_ylabel('planning time per tick [ms]')
    twin = ax.twinx()
    twin.step(t, missed, where='post', color='C7', lw=1, label='missed ticks (total)')
    twin.set_ylabel('missed ticks')
    twin.set_ylim(0, max(1.0, float(np.nanmax(missed, initial=0.0))) * 1.1)
    for s in report.swaps:
        if s.t_ns >= t0:
            ax.axvline((s.t_ns - t0) * 1e-9, color='gray', ls=':', lw=1)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc='upper left')
    ax.set_title('mpc planning time (dotted: checkpoint swaps)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 'Planning time per tick (p50/p99 of the last 200 ticks, once a second).'


def _period_ms(spec: dict[str, Any]) -> float | None:
    from dexmpc_ros.core.robot_spec import load_robot_spec
    try:
        return load_robot_spec(spec['robot']).period_s * 1e3
    except (ConfigError, OSError):
        return None


# Rendering ---------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown (images by relative path)."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == 'h':
            out.append(f'{"#" * block[1]} {block[2]}')
        elif kind == 'p':
            out.append(block[1])
        elif kind == 'ul':
            out.append('\n'.join(f'- {item}' for item in block[1]))
        elif kind == 'table':
            head, rows = block[1], block[2]
            lines = ['| ' + ' | '.join(_md_cell(h) for h in head) + ' |',
                     '|' + '---|' * len(head)]
            lines += ['| ' + ' | '.join(_md_cell(c) for c in row) + ' |' for row in rows]
            out.append('\n'.join(lines))
        elif kind == 'img':
            out.append(f'![{block[2]}]({block[1]})')
    return '\n\n'.join(out) + '\n'


_STYLE = ('body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}'
          'table{border-collapse:collapse;margin:.5em 0}'
          'td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%;text-align:left}'
          'th{background:#eee}img{max-width:100%}')


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as one HTML page: inline style, images by relative path."""
    esc = html.escape
    out = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
           f'<title>{esc(title)}</title><style>{_STYLE}</style></head><body>']
    for block in blocks:
        kind = block[0]
        if kind == 'h':
            out.append(f'<h{block[1]}>{esc(block[2])}</h{block[1]}>')
        elif kind == 'p':
            out.append(f'<p>{esc(block[1])}</p>')
        elif kind == 'ul':
            out.append('<ul>' + ''.join(f'<li>{esc(i)}</li>' for i in block[1]) + '</ul>')
        elif kind == 'table':
            rows = [''.join(f'<th>{esc(h)}</th>' for h in block[1])]
            rows += [''.join(f'<td>{esc(str(c))}</td>' for c in row) for row in block[2]]
            out.append('<table>' + ''.join(f'<tr>{r}</tr>' for r in rows) + '</table>')
        elif kind == 'img':
            out.append(f'<figure><img src="{esc(block[1])}" alt="{esc(block[2])}">'
                       f'<figcaption>{esc(block[2])}</figcaption></figure>')
    out.append('</body></html>')
    return '\n'.join(out) + '\n'
