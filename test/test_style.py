"""The code style check (flake8, setup.cfg's settings) over the package, tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_clean():
    result = subprocess.run([sys.executable, '-m', 'flake8', 'dexmpc_ros', 'bench', 'test',
                             'launch', 'setup.py'],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
