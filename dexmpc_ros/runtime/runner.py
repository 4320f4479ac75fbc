"""
Start an experiment's nodes as separate processes, watch them, stop them cleanly.

This is ``dexmpc up``: the pip-only equivalent of ``ros2 launch`` (the ``launch`` package
is not on PyPI). Each node is ``python -m <module> --ros-args -r __node:=<name>
--params-file <run>/params.yaml``; nodes talk over DDS like any ROS 2 graph.

Run folder (``runs/<time>-<name>/`` by default)::

    spec.yaml      the resolved experiment (after --set overrides)
    params.yaml    the ROS parameter file every node was started with
    logs/<node>.log  stdout+stderr of each node
    bag/           the rosbag2 (MCAP) written by the recorder
    status.jsonl   the status lines, one per second (and one per safety/fault event)

Exit codes of a run (``dexmpc up`` returns them; 2 is the CLI's, for user errors):
:data:`EXIT_OK`, :data:`EXIT_NODE_FAILED`, :data:`EXIT_UNHEALTHY` (runtime/run_health.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from dexmpc_ros.runtime.experiment import (Experiment, NodeDescription, node_descriptions,
                                           ros_params_file)
from dexmpc_ros.runtime.ros_env import ros_environment
from dexmpc_ros.runtime.run_health import EXIT_UNHEALTHY, RunHealth

log = logging.getLogger(__name__)

#: node kinds stopped last, in this order, so they capture everything the others did (the
#: hil world after the driver, which still talks to its emulator while it stops)
STOP_LAST = ('twin', 'hil_world', 'recorder')
STATUS_MODULE = 'dexmpc_ros.ros.status_node'
#: every node ran to the end and stopped cleanly, and the robot stayed healthy
EXIT_OK = 0
#: a node died during the run or did not stop cleanly
EXIT_NODE_FAILED = 1


@dataclass
class RunResult:
    """Outcome of a run; ``notes`` are worth printing but did not fail it."""

    run_dir: Path
    exit_code: int
    failed_node: str | None = None
    reason: str = ''
    last_status: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def default_run_dir(experiment: Experiment, root: str | Path = 'runs') -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<name>``."""
    return Path(root) / f'{datetime.now():%Y%m%d-%H%M%S}-{experiment.name}'


def prepare_run_dir(experiment: Experiment, run_dir: Path) -> list[NodeDescription]:
    """Create the run folder and write spec.yaml and params.yaml."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f'run folder {run_dir} exists and is not empty')
    (run_dir / 'logs').mkdir(parents=True, exist_ok=True)
    descriptions = node_descriptions(experiment, run_dir)
    (run_dir / 'spec.yaml').write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
    (run_dir / 'params.yaml').write_text(
        yaml.safe_dump(ros_params_file(descriptions), sort_keys=False))
    return descriptions


class ExperimentRunner:
    """
    Own the node processes of one run.

    Args:
        experiment: the parsed spec.
        run_dir: the run folder (created).
        domain_id: ROS_DOMAIN_ID for every node (None: inherit).
        on_status: called with each status dict (about once per second).
    """

    def __init__(self, experiment: Experiment, run_dir: Path, domain_id: int | None = None,
                 on_status: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.experiment = experiment
        self.run_dir = run_dir
        self.descriptions = prepare_run_dir(experiment, run_dir)
        self.env = ros_environment(domain_id=domain_id)
        self.on_status = on_status
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[IO[bytes]] = []
        self._status_proc: subprocess.Popen | None = None
        self._status_thread: threading.Thread | None = None
        self.last_status: dict[str, Any] = {}
        self.health = RunHealth(time.time(), tuple(
            d.name for d in self.descriptions if d.kind == 'safety'))
        self._stopping_at: float | None = None

    def _command(self, module: str, name: str, params: bool = True) -> list[str]:
        cmd = [sys.executable, '-m', module, '--ros-args', '-r', f'__node:={name}']
        if params:
            cmd += ['--params-file', str(self.run_dir / 'params.yaml')]
        return cmd

    def start(self) -> None:
        """Start every node (own process group each, so Ctrl-C reaches only the runner)."""
        self.health.start_s = time.time()
        for desc in self.descriptions:
            logfile = open(self.run_dir / 'logs' / f'{desc.name}.log', 'wb')  # noqa: SIM115
            self._logs.append(logfile)
            self.processes[desc.name] = subprocess.Popen(
                self._command(desc.module, desc.name), stdout=logfile,
                stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        status_cmd = self._command(STATUS_MODULE, 'dexmpc_status', params=False)
        if self.experiment.use_sim_time:
            status_cmd += ['-p', 'use_sim_time:=false']
        self._status_proc = subprocess.Popen(
            status_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env,
            start_new_session=True)
        self._status_thread = threading.Thread(target=self._read_status, daemon=True)
        self._status_thread.start()

    def _read_status(self) -> None:
        assert self._status_proc is not None and self._status_proc.stdout is not None
        with open(self.run_dir / 'status.jsonl', 'a') as out:
            for line in self._status_proc.stdout:
                try:
                    status = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.last_status = status
                self.health.observe(status)
                out.write(line.decode() if isinstance(line, bytes) else line)
                out.flush()
                if self.on_status is not None:
                    self.on_status(status)

    def dead_node(self) -> tuple[str, int] | None:
        """The first node process that has exited, with its exit code, if any."""
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a node's log."""
        path = self.run_dir / 'logs' / f'{name}.log'
        try:
            text = path.read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT controllers first, then twin / hil world, then recorder; SIGKILL stragglers."""
        if self._stopping_at is None:
            self._stopping_at = time.time()
        order = {kind: i + 1 for i, kind in enumerate(STOP_LAST)}
        groups: dict[int, list[str]] = {}
        for desc in self.descriptions:
            groups.setdefault(order.get(desc.kind, 0), []).append(desc.name)
        for rank in sorted(groups):
            self._interrupt(groups[rank], timeout_s)
        if self._status_proc is not None:
            self._interrupt_proc(self._status_proc, 3.0)
        if self._status_thread is not None:
            self._status_thread.join(3.0)   # the status lines still in the pipe
        for logfile in self._logs:
            logfile.close()

    def _interrupt(self, names: list[str], timeout_s: float) -> None:
        for name in names:
            proc = self.processes[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for name in names:
            proc = self.processes[name]
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning('node %s ignored SIGINT for %.0f s: killing it', name, timeout_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _interrupt_proc(proc: subprocess.Popen, timeout_s: float) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run(self, duration_s: float, stop_event: threading.Event | None = None,
            poll_s: float = 0.2) -> RunResult:
        """
        Start, watch for ``duration_s`` (or until ``stop_event``), stop.

        Returns:
            :data:`EXIT_OK` when every node lived to the end and stopped cleanly and the
            robot stayed healthy; :data:`EXIT_NODE_FAILED` naming the first node that died
            (with the tail of its log in ``reason``); else :data:`EXIT_UNHEALTHY` with the
            run-health problems in ``reason`` (the supervisor still e-stopped at the end,
            a node at ERROR during the run). E-stops reset during the run are ``notes``.
        """
        stop_event = stop_event or threading.Event()
        self.start()
        deadline = time.monotonic() + duration_s
        failed = None
        try:
            while time.monotonic() < deadline and not stop_event.is_set():
                failed = self.dead_node()
                if failed is not None:
                    break
                time.sleep(poll_s)
        finally:
            self.stop()
        health = self.health.verdict(end_s=self._stopping_at or time.time())
        if failed is not None:
            name, code = failed
            return RunResult(self.run_dir, EXIT_NODE_FAILED, name,
                             f'node {name!r} died (exit code {code}); last log lines:\n'
                             f'{self.log_tail(name)}', self.last_status,
                             health.problems + health.notes)
        bad = {n: p.returncode for n, p in self.processes.items()
               if p.returncode not in (0, -signal.SIGINT)}
        if bad:
            name, code = next(iter(bad.items()))
            return RunResult(self.run_dir, EXIT_NODE_FAILED, name,
                             f'node {name!r} did not stop cleanly (exit code {code}); last log '
                             f'lines:\n{self.log_tail(name)}', self.last_status,
                             health.problems + health.notes)
        if not health.healthy:
            return RunResult(self.run_dir, EXIT_UNHEALTHY, None,
                             'robot not healthy: ' + '; '.join(health.problems),
                             self.last_status, health.notes)
        return RunResult(self.run_dir, EXIT_OK, last_status=self.last_status,
                         notes=health.notes)


@contextmanager
def started(experiment: Experiment, run_dir: Path, domain_id: int | None = None
            ) -> Iterator[ExperimentRunner]:
    """
    Start every node of ``experiment`` and stop them on exit (tests, benchmarks, tools).

    Unlike :meth:`ExperimentRunner.run` it neither times the run nor ends it when a node
    dies, so a caller can kill or freeze nodes on purpose and watch what the rest does.
    Stopped processes (SIGSTOP) are continued before the clean stop.
    """
    runner = ExperimentRunner(experiment, run_dir, domain_id=domain_id)
    runner.start()
    try:
        yield runner
    finally:
        for proc in runner.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        runner.stop()
