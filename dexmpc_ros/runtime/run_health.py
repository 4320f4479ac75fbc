"""
Whether a run left the robot healthy: the verdict behind ``dexmpc up``'s exit status 3.

The status node (ros/status_node.py) adds ``events`` to its JSON lines, each stamped with
the wall clock ``t`` [s] at which it saw them:

    {"kind": "safety", "state": "ESTOPPED: estop: e-stop received"}   every safety/state
    {"kind": "error", "node": "robot", "message": "FAULT: ..."}       a node's diagnostics
                                                                      enter ERROR level
    {"kind": "cleared", "node": "robot", "level": "ok", "message": "..."}   ... and leave it

The rules (README "Run exit status" says why):

- unhealthy when the safety supervisor was still e-stopped when the run ended: the robot
  spent the rest of the run holding, whatever the controller planned;
- unhealthy when any node other than the supervisor reported ERROR during the run (a driver
  fault, a silent hand controller, a failed bag writer, a camera without frames), even if
  it cleared later: the hardware or the data needs a look;
- an e-stop that was reset during the run (the operator or a test pulled it on purpose and
  re-armed) is a note, not a failure.

Events stamped after the run began to stop are ignored: nodes stopping one after the other
see their peers go silent, which is the end of the run, not a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``dexmpc up`` exit status of a run whose robot was not healthy (see module docstring).
EXIT_UNHEALTHY = 3
ESTOPPED = 'ESTOPPED'


@dataclass(frozen=True)
class Verdict:
    """``problems`` make the run exit :data:`EXIT_UNHEALTHY`; ``notes`` are only printed."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """True when nothing makes the run fail."""
        return not self.problems


@dataclass
class _Period:
    """A stretch of an abnormal state: e-stopped, or one node at ERROR."""

    start_s: float
    what: str
    end_s: float | None = None


@dataclass
class RunHealth:
    """
    Collects the status node's events of one run and judges them.

    Args:
        start_s: wall-clock time the run started [s]; event times are printed relative
            to it.
        safety_nodes: names of the safety nodes; their ERROR diagnostics (e-stopped) are
            judged through ``safety/state`` instead.
    """

    start_s: float
    safety_nodes: tuple[str, ...] = ('safety',)
    _estops: list[_Period] = field(default_factory=list)
    _errors: dict[str, list[_Period]] = field(default_factory=dict)

    def observe(self, status: dict[str, Any]) -> None:
        """Take one status line; lines without ``events`` change nothing."""
        for event in status.get('events', ()):
            try:
                self._take(event)
            except (KeyError, TypeError, ValueError):
                continue  # a malformed event is the status node's bug, not the robot's

    def _take(self, event: dict[str, Any]) -> None:
        t = float(event['t'])
        kind = event['kind']
        if kind == 'safety':
            state, _, reason = str(event['state']).partition(': ')
            open_estop = self._estops and self._estops[-1].end_s is None
            if state == ESTOPPED and not open_estop:
                self._estops.append(_Period(t, reason or 'no reason given'))
            elif state != ESTOPPED and open_estop:
                self._estops[-1].end_s = t
        elif kind in ('error', 'cleared') and event['node'] not in self.safety_nodes:
            periods = self._errors.setdefault(str(event['node']), [])
            open_error = periods and periods[-1].end_s is None
            if kind == 'error' and not open_error:
                periods.append(_Period(t, str(event.get('message', ''))))
            elif kind == 'cleared' and open_error:
                periods[-1].end_s = t

    def verdict(self, end_s: float) -> Verdict:
        """The verdict on everything seen before ``end_s`` (wall clock [s]): the run's end."""
        problems, notes = [], []
        for period in self._estops:
            if period.start_s > end_s:
                continue
            at = f'safety e-stopped at {self._rel(period.start_s)}: {period.what}'
            if period.end_s is None or period.end_s > end_s:
                problems.append(f'{at} (still e-stopped at the end)')
            else:
                notes.append(f'{at} (reset at {self._rel(period.end_s)})')
        for node, periods in self._errors.items():
            seen = [p for p in periods if p.start_s <= end_s]
            if not seen:
                continue
            first = seen[0]
            text = f'{node} ERROR at {self._rel(first.start_s)}: {first.what}'
            if first.end_s is not None and first.end_s <= end_s:
                text += f' (cleared at {self._rel(first.end_s)})'
            if len(seen) > 1:
                text += f' (+{len(seen) - 1} more)'
            problems.append(text)
        return Verdict(tuple(problems), tuple(notes))

    def _rel(self, t: float) -> str:
        return f'{t - self.start_s:.1f} s'
