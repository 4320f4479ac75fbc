"""
What a run did, as data, and the reading of its run folder (runtime/runner.py).

The records the report is built from (:class:`Group` of
:class:`~dexmpc_ros.runtime.episode_record.EpisodeRecord`,
:class:`RunOutcome`, :class:`NodeVerdict`, the success rules per task) and the readers of
the folder beside the bag: ``spec.yaml``, ``report/outcome.json``, the node logs and the
git commit. The bag is read by runtime/run_bag.py; the report is runtime/report.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.files import write_text_atomic
from dexmpc_ros.learning.store import Entry
from dexmpc_ros.runtime.episode_record import EpisodeRecord

REPORT_DIR = 'report'
OUTCOME_FILE = 'outcome.json'
#: node kinds whose runs ``dexmpc up`` reports on by itself
REPORTED_KINDS = ('mpc', 'learner')
#: log lines that mean a node did not end normally
CRASH_MARKERS = ('Traceback (most recent call last)', 'configuration error:', '[FATAL]',
                 'Segmentation fault')


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


# Run folder --------------------------------------------------------------------------------
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
