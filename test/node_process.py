"""Start one dexmpc_ros node as its own process (parameters from a file) and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def start_node(module: str, tmp_path: Path, ros_env: dict, params: dict, log_name: str,
               extra_paths: Sequence[str] = ()) -> tuple[subprocess.Popen, Path]:
    """
    ``python -m <module> --ros-args --params-file <tmp_path>/params.yaml`` in ``ros_env``.

    Returns:
        The process and its log file (stdout and stderr).
    """
    params_file = tmp_path / 'params.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
    path = os.pathsep.join(filter(None, [str(REPO), *extra_paths,
                                         ros_env.get('PYTHONPATH')]))
    log = tmp_path / log_name
    proc = subprocess.Popen([sys.executable, '-m', module, '--ros-args', '--params-file',
                             str(params_file)], env=dict(ros_env, PYTHONPATH=path), cwd=REPO,
                            stdout=log.open('w'), stderr=subprocess.STDOUT)
    return proc, log


def stop(proc: subprocess.Popen) -> int:
    """SIGINT, then kill after 10 s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
