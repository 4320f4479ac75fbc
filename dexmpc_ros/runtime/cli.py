"""
The ``dexmpc`` command line.

    dexmpc list                               experiments, one per line: name, description
    dexmpc up <name> [--duration S] [--set node.param=value ...] [--output DIR]
              [--domain-id N|auto]      N: refused while another dexmpc run holds it
    dexmpc robots                             robot specs, one per line
    dexmpc train <bag>... --robot R --store DIR [--epochs N ...] [--no-task-state]
                                              train, validate, propose
    dexmpc rollback <store> [--reason TEXT]   put the previous accepted model back in use
    dexmpc models <store>                     the checkpoint history of a store
    dexmpc report <run>                       write <run>/report/: report.md, .html, plots

User errors (bad input, a missing or unusable bag, store or run folder) print one line,
``dexmpc: error: <what is wrong>; <what to do>``, and exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dexmpc_ros.core.errors import BagError, CheckpointError, ConfigError, DexmpcError
from dexmpc_ros.core.robot_spec import available_robots, load_robot_spec
from dexmpc_ros.data.bag_reader import bag_info
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.store import HISTORY_FILE, CheckpointStore
from dexmpc_ros.learning.dynamics.training import TrainConfig, train_from_bags
from dexmpc_ros.runtime.domains import DomainBusyError, claim_domain
from dexmpc_ros.runtime.experiment import Experiment, describe_experiments, load_experiment
from dexmpc_ros.runtime.report import write_report
from dexmpc_ros.runtime.run_records import RunOutcome, git_commit, has_reported_node
from dexmpc_ros.runtime.runner import (EXIT_NODE_FAILED, EXIT_OK, EXIT_UNHEALTHY,
                                       ExperimentRunner, RunResult, default_run_dir)
from dexmpc_ros.runtime.status import format_status

#: user errors (bad experiment, --set, --duration, a held ROS domain): one line, no traceback
EXIT_USAGE = 2
UP_EXIT_STATUS = f"""exit status:
  {EXIT_OK}  every node ran to the end (or to Ctrl-C), stopped cleanly, robot healthy
  {EXIT_NODE_FAILED}  a node died or did not stop cleanly (named, with the end of its log)
  {EXIT_USAGE}  user error: unknown experiment, bad --set/--duration, ROS domain in use
  {EXIT_UNHEALTHY}  robot not healthy: the safety supervisor was still e-stopped at the end, or
     a node (driver, hand, recorder, camera) reported ERROR during the run; printed:
     which node, when, what. An e-stop reset during the run is printed, not a failure."""


def _domain_id(text: str) -> int | str:
    if text == 'auto':
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer or "auto", got {text!r}')


def _run_domain(requested: int | str | None) -> int | None:
    """``--domain-id`` -> the domain to claim: an id, or None for "any free one"."""
    if requested == 'auto':
        return None
    if requested is not None:
        return int(requested)
    inherited = os.environ.get('ROS_DOMAIN_ID', '').strip()
    if not inherited:
        return 0                                       # ROS 2's default domain
    try:
        return int(inherited)
    except ValueError:
        raise ConfigError(f'environment variable ROS_DOMAIN_ID must be an integer, '
                          f'got {inherited!r}') from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='dexmpc', description=__doc__.split('\n')[1])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help='list experiments')
    sub.add_parser('robots', help='list robot specs')
    up = sub.add_parser('up', help='run an experiment: every node in its own process',
                        epilog=UP_EXIT_STATUS,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument('experiment', help='experiment name (see `dexmpc list`) or YAML path')
    up.add_argument('--duration', type=float, default=None,
                    help='stop after S seconds (default: the spec\'s duration_s)')
    up.add_argument('--set', dest='overrides', action='append', default=[],
                    metavar='NODE.PARAM=VALUE', help='override a node parameter (repeatable)')
    up.add_argument('--output', type=Path, default=None,
                    help='run folder (default runs/<time>-<name>)')
    up.add_argument('--domain-id', type=_domain_id, default=None,
                    help='ROS_DOMAIN_ID for the run, or "auto": a free one (default: '
                         'inherit, else 0). A domain another dexmpc run holds is refused')
    up.add_argument('--quiet', action='store_true', help='no live status line')
    train = sub.add_parser('train', help='train a dynamics model from rosbag2 directories, '
                           'validate it on held-out episodes and propose it to a store')
    train.add_argument('bags', nargs='+', type=Path, help='rosbag2 directories')
    train.add_argument('--robot', required=True, help='robot spec name or YAML path')
    train.add_argument('--store', type=Path, required=True, help='checkpoint store directory')
    train.add_argument('--epochs', type=int, default=DynamicsConfig.epochs)
    train.add_argument('--ensemble', type=int, default=DynamicsConfig.ensemble_size,
                       help='ensemble members')
    train.add_argument('--hidden', type=int, nargs='+', default=list(DynamicsConfig.hidden),
                       help='hidden layer widths')
    train.add_argument('--holdout', type=float, default=TrainConfig.holdout,
                       help='fraction of episodes held out for validation')
    train.add_argument('--horizon', type=int, default=TrainConfig.horizon,
                       help='steps of the open-loop validation error')
    train.add_argument('--seed', type=int, default=DynamicsConfig.seed)
    train.add_argument('--threads', type=int, default=0,
                       help='torch threads (0: torch\'s default)')
    train.add_argument('--no-task-state', action='store_true',
                       help='learn from joint_states alone: the state is joint positions '
                            'and velocities, a task_state topic is neither needed nor read '
                            '(for bags recorded without one, e.g. on a real robot)')
    train.add_argument('--quiet', action='store_true', help='no progress bar')
    rollback = sub.add_parser('rollback', help='take the current model out of use; the one '
                              'accepted before it is used again (the learner republishes it)')
    rollback.add_argument('store', type=Path, help='checkpoint store directory')
    rollback.add_argument('--reason', default='rolled back by the operator',
                          help='recorded in the history')
    models = sub.add_parser('models', help='show the checkpoint history of a store')
    models.add_argument('store', type=Path, help='checkpoint store directory')
    report = sub.add_parser('report', help='write a run\'s report (episodes, success, '
                            'checkpoints, planner timing, safety) into <run>/report/')
    report.add_argument('run', type=Path, help='run folder (as `dexmpc up` prints it)')
    return parser


#: ``dexmpc train`` flag of each TrainConfig field it sets (errors name the flag)
_TRAIN_FLAGS = {'ensemble_size': '--ensemble', 'hidden': '--hidden', 'epochs': '--epochs',
                'holdout': '--holdout', 'horizon': '--horizon', 'seed': '--seed',
                'threads': '--threads'}


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The flags as a TrainConfig; ConfigError naming the flag for a bad value."""
    try:
        model = DynamicsConfig(ensemble_size=args.ensemble, hidden=tuple(args.hidden),
                               epochs=args.epochs, seed=args.seed, threads=args.threads)
        return TrainConfig(model=model, holdout=args.holdout, horizon=args.horizon)
    except ValueError as exc:
        message = str(exc)
        for field_name, flag in _TRAIN_FLAGS.items():
            if message.startswith(field_name + ' '):
                message = flag + message[len(field_name):]
                break
        raise ConfigError(f'{message}; see dexmpc train --help') from None


def open_store(path: Path, create: bool) -> CheckpointStore:
    """
    The checkpoint store at ``path``; ``create`` False: it must exist (rollback, models).

    Raises:
        CheckpointError: no store there (``create`` False), or its history is unreadable.
        ConfigError: the path cannot hold a store (a file, no permission, ...).
    """
    if not create and not (path / HISTORY_FILE).is_file():
        raise CheckpointError(f'{path}: no checkpoint store here (no {HISTORY_FILE}); pass '
                              f'a run\'s models/ folder or a dexmpc train --store folder')
    try:
        return CheckpointStore(path)
    except OSError as exc:
        raise ConfigError(f'{path}: cannot be used as a checkpoint store '
                          f'({exc.strerror or exc}); pass a writable directory') from None


def cmd_train(args: argparse.Namespace) -> int:
    """Train from bags, print the validation and whether the store accepted the model."""
    config = _train_config(args)
    spec = load_robot_spec(args.robot)
    store = open_store(args.store, create=True)
    bars: list[tqdm] = []

    def progress(epoch: int, loss: float) -> None:
        if not bars:  # from the first epoch: an error reading the bags comes without a bar
            bars.append(tqdm(total=config.model.epochs, unit='epoch', disable=args.quiet,
                             desc='training'))
        bars[0].set_postfix(loss=f'{loss:.4g}')
        bars[0].update(1)

    try:
        result = train_from_bags(args.bags, spec, store, config, on_epoch=progress,
                                 task_names=() if args.no_task_state else None)
    finally:
        for bar in bars:
            bar.close()
    metrics = result.metrics
    print(f'checkpoint: {result.checkpoint}')
    print(f'held-out {metrics["horizon"]}-step error: mean {metrics["score"]:.4g}, '
          f'last step {metrics["final"]:.4g} (state stds, {metrics["windows"]} windows)')
    verdict = 'ACCEPTED, now current' if result.entry.accepted else 'not accepted'
    print(f'{verdict}: {result.entry.reason}')
    if result.plot is not None:
        print(f'loss curve: {result.plot}')
    return 0


def run_train(args: argparse.Namespace) -> int:
    """
    :func:`cmd_train`, and when it fails: remove the store folder it created (still empty),
    and point a bag without ``task_state`` to ``--no-task-state``.
    """
    new_store = not args.store.exists()
    try:
        return cmd_train(args)
    except BaseException as exc:
        if new_store and args.store.is_dir() and not any(args.store.iterdir()):
            args.store.rmdir()
        if isinstance(exc, BagError) and not args.no_task_state:
            lacking = [str(b) for b in args.bags if not _has_topic(b, 'task_state')]
            if lacking:
                raise BagError(f'{exc} ({", ".join(lacking)} has no task_state topic: pass '
                               f'--no-task-state to learn from joint_states alone)') from exc
        raise


def _has_topic(bag: Path, name: str) -> bool:
    """``bag`` lists a topic ``name`` in some namespace (True if it cannot be read)."""
    try:
        topics = bag_info(bag).topics
    except BagError:
        return True
    return any(t == name or t.endswith('/' + name) for t in topics)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll the store back one accepted model and say which one is current now."""
    store = open_store(args.store, create=False)
    previous = store.current()
    now = store.rollback(args.reason)
    print(f'rolled back {Path(previous.path).name}; current model: {now.path}')
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Print the history: one line per proposal, the current one marked."""
    store = open_store(args.store, create=False)
    current = store.current()
    for entry in store.entries:
        mark = '*' if entry is current else ' '
        state = ('rolled back' if entry.rolled_back else 'accepted' if entry.accepted
                 else 'refused')
        score = entry.metrics.get('score', float('nan'))
        print(f'{mark} {Path(entry.path).name}  score {score:.4g}  {state}: {entry.reason}')
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report of a run folder and print where it is."""
    try:
        path = write_report(args.run)
    except OSError as exc:
        raise ConfigError(f'{args.run}: cannot write the report: {exc}') from exc
    print(f'report: {path}')
    return 0


def report_after_up(experiment: Experiment, run_dir: Path, outcome: RunOutcome) -> None:
    """
    Write the report at the end of ``dexmpc up`` for runs with an mpc or learner node.

    Never raises: the run's exit code is the run's, so a failed report is only printed
    (with the command that retries it). Ctrl-C now aborts the report, not the run.
    """
    if not has_reported_node(n.kind for n in experiment.nodes):
        return
    retry = f'(retry: dexmpc report {run_dir})'
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print(f'report: {write_report(run_dir, outcome)}', flush=True)
    except KeyboardInterrupt:
        print(f'dexmpc: report interrupted {retry}', file=sys.stderr)
    except (DexmpcError, OSError) as exc:
        print(f'dexmpc: report not written: {exc} {retry}', file=sys.stderr)
    except Exception:  # noqa: BLE001 - a report bug must not turn a good run into a failure
        traceback.print_exc()
        print(f'dexmpc: report not written (the error above is a bug) {retry}',
              file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)


def _outcome(result: RunResult, runner: ExperimentRunner, stopped: bool, duration: float,
             elapsed: float, commit: str | None) -> RunOutcome:
    return RunOutcome(
        exit_code=result.exit_code, failed_node=result.failed_node, reason=result.reason,
        interrupted=stopped, duration_s=duration, elapsed_s=elapsed, git_commit=commit,
        node_exit_codes={name: proc.returncode for name, proc in runner.processes.items()})


def cmd_list() -> int:
    """Print experiments, one per line."""
    rows = describe_experiments()
    width = max((len(name) for name, _ in rows), default=0)
    for name, description in rows:
        print(f'{name:<{width}}  {description}')
    return 0


def cmd_robots() -> int:
    """Print robot specs, one per line."""
    for name in available_robots():
        spec = load_robot_spec(name)
        print(f'{name:<8}  {len(spec.joints)} joints ({len(spec.actuated_joints)} actuated), '
              f'{spec.command_interface} commands at {spec.control_rate_hz:g} Hz  '
              f'{spec.description}')
    return 0


class _LiveStatus:
    """Prints status lines: in place on a terminal, every few seconds otherwise."""

    def __init__(self, node_names: list[str], quiet: bool) -> None:
        self.node_names = node_names
        self.quiet = quiet
        self.start = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._last_print = 0.0

    def __call__(self, status: dict[str, Any]) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        line = format_status(now - self.start, status, self.node_names)
        if self.tty:
            sys.stdout.write('\r\x1b[2K' + line[:200])
            sys.stdout.flush()
        elif now - self._last_print >= 5.0:
            self._last_print = now
            print(line, flush=True)

    def finish(self) -> None:
        if self.tty and not self.quiet:
            sys.stdout.write('\n')


def cmd_up(args: argparse.Namespace) -> int:
    """Run an experiment; the exit status is the run's (``UP_EXIT_STATUS``)."""
    experiment = load_experiment(args.experiment, args.overrides)
    duration = args.duration if args.duration is not None else experiment.duration_s
    if duration <= 0:
        raise ConfigError(f'--duration must be > 0, got {duration}')
    run_dir = args.output or default_run_dir(experiment)
    with claim_domain(_run_domain(args.domain_id), str(Path(run_dir).resolve())) as domain:
        return _up(args, experiment, duration, run_dir, domain.domain_id)


def _up(args: argparse.Namespace, experiment: Experiment, duration: float, run_dir: Path,
        domain_id: int) -> int:
    status = _LiveStatus([n.name for n in experiment.nodes], args.quiet)
    runner = ExperimentRunner(experiment, run_dir, domain_id, on_status=status)
    print(f'dexmpc up {experiment.name}: {experiment.robot} ({experiment.backend}), '
          f'{duration:g} s, nodes: {", ".join(n.name for n in experiment.nodes)}')
    print(f'run folder: {run_dir}, ROS_DOMAIN_ID {domain_id}', flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    commit, started = git_commit(), time.monotonic()
    result = runner.run(duration, stop)
    elapsed = time.monotonic() - started
    status.finish()
    if result.last_status:
        print('final: ' + format_status(time.monotonic() - status.start, result.last_status,
                                        status.node_names))
    print(f'run folder: {run_dir}')
    for note in result.notes:
        print(f'note: {note}')
    if result.exit_code != EXIT_OK:
        print(f'FAILED (exit {result.exit_code}): {result.reason}', file=sys.stderr)
    report_after_up(experiment, run_dir, _outcome(result, runner, stop.is_set(), duration,
                                                  elapsed, commit))
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dexmpc`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == 'list':
            return cmd_list()
        if args.command == 'robots':
            return cmd_robots()
        if args.command == 'train':
            return run_train(args)
        if args.command == 'rollback':
            return cmd_rollback(args)
        if args.command == 'models':
            return cmd_models(args)
        if args.command == 'report':
            return cmd_report(args)
        return cmd_up(args)
    except (ConfigError, FileExistsError, CheckpointError, BagError, DomainBusyError) as exc:
        print(f'dexmpc: error: {exc}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file or folder the user named: missing, a file, read-only
        print(f'dexmpc: error: {exc}; check the path and its permissions', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f'dexmpc: {args.command} interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
