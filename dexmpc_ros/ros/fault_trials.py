"""
Fault trials on a running experiment: e-stop, frozen twin, killed controller.

Each trial pokes the graph through a :class:`GraphProbe` (which records ``command`` and
``joint_states`` with wall-clock receive times) and returns its measured figures; the tests
assert on them, ``bench/safety.py`` repeats and tabulates them. Times are wall clock
(``time.time_ns()``), the clock the nodes stamp with.

Each trial watches for a number of twin steps (``joint_states``), not seconds, and reports
its figures twice: in milliseconds (``*_ms``, what the bench tabulates) and in twin steps
(``*_steps``): a machine slowed by load slows the twin with the other nodes, so the tests
bound step counts and leave milliseconds to the bench.

Definitions:

- *hold*: the first ``command`` stamped at or after the event (controller commands carry
  older observation stamps; the supervisor stamps holds with its own now).
- *stopped*: every actuated joint below :data:`STOP_FRACTION` of its velocity limit in all
  later ``joint_states`` (up to the twin's next episode, which teleports the robot: record
  ``episode`` with the probe) (what remains is the servo settling onto its hold point);
  *settled*: the same below :data:`SETTLE_FRACTION`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence

import numpy as np

from dexmpc_ros.core.message_fields import command_values
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.kinematics import load_kinematics
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.probe import GraphProbe
from dexmpc_ros.runtime.experiment import Experiment
from dexmpc_ros.runtime.runner import ExperimentRunner
from dexmpc_ros.safety.audit import settle_time

STOP_FRACTION = 0.05
SETTLE_FRACTION = 0.01
#: After a frozen twin thaws, motion is judged from this many twin steps on (it resumes
#: moving with its old momentum for a step or two, until the hold reaches it).
SETTLE_AFTER_THAW_STEPS = 6
#: Twin steps a trial watches after its event (1.5 s at 20 Hz).
WATCH_STEPS = 30
#: Wait [s] for a graph to make the progress a trial watches for: a timeout, not a bound.
PROGRESS_TIMEOUT_S = 60.0


def ensure_armed(probe: GraphProbe, timeout_s: float = 60.0) -> None:
    """
    Wait for the auto-armed supervisor; reset it once if start-up hiccups e-stopped it.

    On a loaded 2-core machine, nodes importing at start-up can starve the twin past the
    heartbeat timeout; a trial then starts from a reset, as an operator would.
    """
    probe.spin_until(lambda: probe.safety_state.startswith(('ARMED', 'ESTOPPED')), timeout_s,
                     f'safety/state ARMED (now {probe.safety_state!r})')
    if probe.safety_state.startswith('ESTOPPED'):
        probe.spin_for(0.5)
        response = probe.call('reset')
        if not response.success:
            raise AssertionError(f'start-up e-stop could not be reset: {response.message}')
    probe.wait_for_state('ARMED', 5.0)


def joint_arrays(msgs: Sequence, spec: RobotSpec
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[(t, JointState)] -> (stamps ns (T,), positions (T, n), velocities (T, n))."""
    stamps = np.array([convert.time_to_ns(m.header.stamp) for _, m in msgs], dtype=np.int64)
    rows = [convert.joint_state_to_arrays(m, spec.joint_names) for _, m in msgs]
    n = len(spec.joints)
    positions = np.array([r[0] for r in rows]).reshape(-1, n)
    return stamps, positions, np.array([r[1] for r in rows]).reshape(-1, n)


def first_hold(probe: GraphProbe, since_ns: int) -> tuple[int, object] | None:
    """(receive time, msg) of the first ``command`` stamped at or after ``since_ns``."""
    return next(((t, m) for t, m in probe.received['command']
                 if convert.time_to_ns(m.header.stamp) >= since_ns), None)


def states_between(probe: GraphProbe, since_ns: int, until_ns: int | None = None) -> int:
    """Number of ``joint_states`` stamped in [since_ns, until_ns) (twin steps in between)."""
    return sum(1 for _, m in probe.received['joint_states']
               if since_ns <= convert.time_to_ns(m.header.stamp)
               and (until_ns is None or convert.time_to_ns(m.header.stamp) < until_ns))


def watch(probe: GraphProbe, since_ns: int, steps: int, what: str,
          also: Callable[[], bool] = lambda: True) -> None:
    """
    Spin until ``steps`` twin states stamped at or after ``since_ns`` are in (or the twin's
    next episode began: the watch ends at a reset) and ``also()`` holds.

    A count, so a twin slowed by load is watched for as many steps as on a quiet machine;
    :data:`PROGRESS_TIMEOUT_S` only catches a graph that stopped.
    """
    def done() -> bool:
        ended = any(t > since_ns for t, _ in probe.received.get('episode', []))
        return (ended or states_between(probe, since_ns) >= steps) and also()
    probe.spin_until(done, PROGRESS_TIMEOUT_S, f'{steps} twin steps after {what}')


def next_episode_ns(probe: GraphProbe, since_ns: int, spec: RobotSpec) -> int | None:
    """
    Receive time [ns] from which ``joint_states`` may belong to the twin's next episode.

    A new episode teleports the robot to its start pose, which is no motion the supervisor
    commanded. ``episode`` and ``joint_states`` are separate topics, so the cut is two
    control periods before the ``episode`` message arrived.
    """
    resets = [t for t, _ in probe.received.get('episode', []) if t > since_ns]
    if not resets:
        return None
    return min(resets) - int(2 * spec.period_s * 1e9)


def episode_seconds(experiment: Experiment, spec: RobotSpec) -> float | None:
    """Wall-clock length [s] of the experiment's twin episodes at real time, if it has any."""
    steps = next((node.parameters['episode_steps'] for node in experiment.nodes
                  if 'episode_steps' in node.parameters), None)
    return None if steps is None else steps * spec.period_s


def clear_of_episode_end(probe: GraphProbe, episode_s: float, window_s: float,
                         lead_s: float = 1.0) -> None:
    """
    Return when the next ``window_s`` seconds hold no episode reset of the twin.

    A reset cuts a trial's watch window (see :func:`next_episode_ns`); one landing just
    after the event leaves too few states to see the robot stop. If the time since the
    last ``episode`` message leaves less than ``window_s`` + 0.5 s of a ``episode_s``
    episode (wall clock; a twin slowed by load only makes episodes longer), wait for the
    next reset and then ``lead_s`` for the robot to be moving again. The probe must
    record ``episode``.
    """
    resets = probe.received['episode']
    elapsed_s = (time.time_ns() - resets[-1][0]) * 1e-9 if resets else float('inf')
    if elapsed_s + window_s + 0.5 <= episode_s:
        return
    count = len(resets)
    probe.spin_until(lambda: len(resets) > count, episode_s + 5.0, 'the next episode')
    probe.spin_for(lead_s)


def main_joints(spec: RobotSpec) -> list[int]:
    """Command indices of the joints that carry the motion: an arm's kinematic chain, else all."""
    if spec.workspace is None:
        return list(range(len(spec.command_names)))
    chain = load_kinematics(spec.workspace.kinematics).joints
    return [i for i, j in enumerate(spec.command_names) if j in chain]


def moving_speed(probe: GraphProbe, spec: RobotSpec, last: int = 10) -> float:
    """Largest |speed| / limit of the main joints over the newest ``last`` joint_states."""
    probe.spin_until(lambda: len(probe.received['joint_states']) >= last, 10.0,
                     f'{last} joint_states')
    _, _, vel = joint_arrays(probe.received['joint_states'][-last:], spec)
    main = main_joints(spec)
    act = spec.actuated_index[main]
    return float(np.max(np.abs(vel[:, act]) / spec.limits_array('velocity')[main]))


def stop_figures(probe: GraphProbe, spec: RobotSpec, since_ns: int) -> dict[str, float]:
    """
    Stop/settle times [ms] after ``since_ns`` and the position drift once stopped.

    ``stop_steps``/``arm_stop_steps``: the same stops counted in twin states stamped after
    ``since_ns`` (the stopped state included).

    ``stop_ms``/``settle_ms`` cover every actuated joint; for an arm (a spec with a
    workspace) ``arm_stop_ms`` covers the kinematic chain alone, without the gripper, whose
    weak, slow servo takes a few periods more to come back to its hold point.
    """
    until = next_episode_ns(probe, since_ns, spec)
    after = [(t, m) for t, m in probe.received['joint_states']
             if convert.time_to_ns(m.header.stamp) > since_ns and (until is None or t < until)]
    stamps, pos, vel = joint_arrays(after, spec)
    act = spec.actuated_index
    scaled = np.abs(vel[:, act]) / spec.limits_array('velocity')

    def ms(seconds: float | None) -> float:
        return float('nan') if seconds is None else seconds * 1e3

    def steps(seconds: float | None) -> float:
        if seconds is None:
            return float('nan')
        return float(np.count_nonzero(stamps <= since_ns + int(round(seconds * 1e9))))

    stop = settle_time(stamps, scaled, since_ns, STOP_FRACTION)
    figures = {'stop_ms': ms(stop), 'stop_steps': steps(stop),
               'settle_ms': ms(settle_time(stamps, scaled, since_ns, SETTLE_FRACTION)),
               'drift_after_stop': float('nan')}
    if spec.workspace is not None:
        arm_stop = settle_time(stamps, scaled[:, main_joints(spec)], since_ns, STOP_FRACTION)
        figures['arm_stop_ms'] = ms(arm_stop)
        figures['arm_stop_steps'] = steps(arm_stop)
    if stop is not None and spec.command_interface == 'position':
        stopped = stamps >= since_ns + int(stop * 1e9)
        figures['drift_after_stop'] = (float(np.ptp(pos[stopped][:, act], axis=0).max())
                                       if stopped.sum() > 1 else 0.0)
    return figures


def hold_figures(probe: GraphProbe, since_ns: int) -> dict[str, float]:
    """
    hold_ms (``since_ns`` -> first hold received) and hold_steps (twin states stamped
    between ``since_ns`` and the hold's stamp); NaN without a hold.
    """
    hold = first_hold(probe, since_ns)
    if hold is None:
        return {'hold_ms': float('nan'), 'hold_steps': float('nan')}
    stamp_ns = convert.time_to_ns(hold[1].header.stamp)
    return {'hold_ms': (hold[0] - since_ns) * 1e-6,
            'hold_steps': float(states_between(probe, since_ns, stamp_ns))}


def estop_trial(probe: GraphProbe, spec: RobotSpec, watch_steps: int = WATCH_STEPS,
                episode_s: float | None = None) -> dict[str, float]:
    """
    E-stop the moving robot, watch ``watch_steps`` twin steps, measure, release and reset.

    With ``episode_s`` (the twin's episode length), the e-stop waits until the watch window
    is clear of an episode reset (:func:`clear_of_episode_end`).

    Returns:
        hold_ms / hold_steps (e-stop publish -> hold, :func:`hold_figures`), stop_ms,
        stop_steps, settle_ms, drift_after_stop [rad or m], latched (1.0 if still ESTOPPED
        after the release), reset_ok.
    """
    if episode_s is not None:
        clear_of_episode_end(probe, episode_s, watch_steps * spec.period_s)
    moving = moving_speed(probe, spec)
    t_estop = probe.estop(True)
    probe.wait_for_state('ESTOPPED', 10.0)
    watch(probe, t_estop, watch_steps, 'the e-stop',
          lambda: first_hold(probe, t_estop) is not None)
    figures = {'moving': moving, **hold_figures(probe, t_estop),
               **stop_figures(probe, spec, t_estop)}
    probe.estop(False)
    probe.spin_for(0.3)
    figures['latched'] = float(probe.safety_state.startswith('ESTOPPED'))
    figures['reset_ok'] = float(probe.call('reset').success)
    probe.wait_for_state('ARMED', 3.0)
    return figures


def freeze_trial(probe: GraphProbe, runner: ExperimentRunner, spec: RobotSpec,
                 frozen_s: float = 0.6, watch_steps: int = WATCH_STEPS) -> dict[str, float]:
    """
    SIGSTOP the twin (or driver), thaw it, watch ``watch_steps`` twin steps, measure; the
    supervisor is left ESTOPPED.

    Returns:
        estop_ms (freeze -> ``safety/state`` ESTOPPED received), state_lost (1.0 if the
        reason names it), still_estopped after the thaw, samples_after_thaw (states judged),
        travel_on_thaw (largest joint travel from the last pre-freeze state),
        drift_after_thaw (largest joint travel from :data:`SETTLE_AFTER_THAW_STEPS` after
        the thaw on; position robots).
    """
    robot = next(name for name, desc in zip(runner.processes, runner.descriptions)
                 if desc.kind in ('twin', 'driver'))
    proc = runner.processes[robot]
    joints = probe.received['joint_states']
    before = len(joints)
    t_freeze = time.time_ns()
    proc.send_signal(signal.SIGSTOP)
    try:
        t_lost = probe.wait_for_state('ESTOPPED', 10.0)
        probe.spin_for(max(frozen_s - (time.time_ns() - t_freeze) * 1e-9, 0.0))
    finally:
        proc.send_signal(signal.SIGCONT)
    t_thaw = time.time_ns()
    watch(probe, t_thaw, watch_steps, 'the thaw')
    act = spec.actuated_index
    frozen = joint_arrays(joints[before - 1:before], spec)[1][0, act]
    until = next_episode_ns(probe, t_freeze, spec)
    later = [(t, m) for t, m in joints[before:] if t > t_thaw and (until is None or t < until)]
    _, pos, _ = joint_arrays(later, spec)
    settled = later[SETTLE_AFTER_THAW_STEPS:]
    _, pos_settled, _ = joint_arrays(settled, spec)
    position_robot = spec.command_interface == 'position'
    nan = float('nan')
    return {'estop_ms': (t_lost - t_freeze) * 1e-6,
            'state_lost': float('state_lost' in probe.safety_state),
            'still_estopped': float(probe.safety_state.startswith('ESTOPPED')),
            'samples_after_thaw': float(len(pos_settled)),
            # the twin resumes with the momentum it froze with; the hold is re-captured where
            # the state comes back, so what matters is that nothing moves after that
            'travel_on_thaw': (float(np.abs(pos[:, act] - frozen).max())
                               if position_robot and len(pos) else nan),
            'drift_after_thaw': (float(np.ptp(pos_settled[:, act], axis=0).max())
                                 if position_robot and len(pos_settled) > 1 else nan)}


def kill_trial(probe: GraphProbe, runner: ExperimentRunner, spec: RobotSpec,
               controller: str = 'controller', watch_steps: int = WATCH_STEPS,
               episode_s: float | None = None, min_holds: int = 10) -> dict[str, float]:
    """
    SIGKILL the controller mid-motion and measure the watchdog.

    Watches ``watch_steps`` twin steps and until ``min_holds`` holds are in. With
    ``episode_s`` (the twin's episode length), the kill waits until the watch window is
    clear of an episode reset (:func:`clear_of_episode_end`).

    Returns:
        hold_ms / hold_steps (kill -> first hold, :func:`hold_figures`), stop_ms,
        stop_steps, settle_ms, drift_after_stop, holds (number of hold commands after it;
        all equal: constant = 1.0), armed (1.0 if the supervisor stayed ARMED: a dead
        controller is not an e-stop).
    """
    if episode_s is not None:
        clear_of_episode_end(probe, episode_s, watch_steps * spec.period_s)
    moving = moving_speed(probe, spec)
    t_kill = time.time_ns()
    runner.processes[controller].send_signal(signal.SIGKILL)

    def holds_in() -> list:
        hold = first_hold(probe, t_kill)
        return [] if hold is None else [m for t, m in probe.received['command']
                                        if t >= hold[0]]
    watch(probe, t_kill, watch_steps, 'the kill', lambda: len(holds_in()) >= min_holds)
    held = [command_values(m, spec.command_interface) for m in holds_in()]
    return {'moving': moving, **hold_figures(probe, t_kill),
            **stop_figures(probe, spec, t_kill),
            'holds': float(len(held)),
            'constant': float(bool(held) and all(np.array_equal(h, held[0]) for h in held)),
            'armed': float(probe.safety_state.startswith('ARMED'))}
