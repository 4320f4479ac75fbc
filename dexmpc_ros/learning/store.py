"""
The checkpoint history of one robot: which models were tried, which one is in use.

A store is a directory::

    <root>/
      history.json        every proposal, oldest first: path, time, metrics, accepted, reason
      ckpt-0001/ ...      checkpoints (learning/checkpoint.py), never overwritten or deleted

``history.json`` is rewritten atomically (temp file + fsync + rename), so a crash leaves
either the old or the new history. The *current* model is the newest accepted entry that
has not been rolled back; :meth:`CheckpointStore.propose` accepts a new model only if its
validation error beats the current one's (the learner never swaps in a worse model);
:meth:`CheckpointStore.rollback` marks the current one rolled back, so the one accepted
before it becomes current again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.files import write_text_atomic

HISTORY_FILE = 'history.json'
HISTORY_VERSION = 1


@dataclass
class Entry:
    """
    One proposed checkpoint.

    Attributes:
        path: checkpoint directory (absolute).
        created: Unix time of the proposal [s].
        metrics: validation figures (``score`` is the one compared; lower is better).
        accepted: it beat the model in use when proposed.
        reason: why it was (not) accepted, or why it was rolled back.
        rolled_back: taken out of use by :meth:`CheckpointStore.rollback`.
    """

    path: str
    created: float
    metrics: dict[str, float] = field(default_factory=dict)
    accepted: bool = False
    reason: str = ''
    rolled_back: bool = False


class CheckpointStore:
    """
    Checkpoint history under ``root`` (created if missing).

    Args:
        root: the store directory.
        min_improvement: a proposal must lower the current ``score`` by this fraction
            (0.0: any strict improvement).
    """

    def __init__(self, root: str | os.PathLike[str], min_improvement: float = 0.0) -> None:
        if not 0.0 <= min_improvement < 1.0:
            raise ValueError(f'min_improvement must be in [0, 1), got {min_improvement}')
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.min_improvement = min_improvement
        self.entries = self._read()

    # Queries -----------------------------------------------------------------------------
    def current(self) -> Entry | None:
        """The model in use: the newest accepted entry not rolled back."""
        for entry in reversed(self.entries):
            if entry.accepted and not entry.rolled_back:
                return entry
        return None

    def next_path(self) -> Path:
        """Where the next checkpoint should be saved (``ckpt-NNNN``)."""
        return self.root / f'ckpt-{len(self.entries) + 1:04d}'

    # Changes -----------------------------------------------------------------------------
    def propose(self, path: str | os.PathLike[str], metrics: dict[str, Any],
                baseline: float | None = None) -> Entry:
        """
        Record a saved checkpoint and decide whether it replaces the current one.

        Args:
            path: the saved checkpoint directory.
            metrics: must hold ``score`` (validation error, lower is better, finite).
            baseline: the current model's score re-measured on the same validation data
                (a fair comparison); None compares with the score it was accepted with.

        Returns:
            The new entry (``accepted`` tells the caller whether to publish it).
        """
        score = metrics.get('score')
        if not isinstance(score, (int, float)) or score != score or abs(score) == float('inf'):
            raise ValueError(f'metrics need a finite "score", got {score!r}')
        current = self.current()
        if current is None:
            accepted, reason = True, 'first model'
        else:
            reference = current.metrics['score'] if baseline is None else baseline
            bound = reference * (1.0 - self.min_improvement)
            accepted = score < bound
            reason = (f'score {score:.4g} {"<" if accepted else ">="} {bound:.4g} '
                      f'(current {Path(current.path).name}: {reference:.4g}'
                      f'{" on the same data" if baseline is not None else ""})')
        entry = Entry(str(Path(path).absolute()), time.time(), dict(metrics), accepted, reason)
        self.entries.append(entry)
        self._write()
        return entry

    def rollback(self, reason: str = 'rolled back by the operator') -> Entry:
        """
        Take the current model out of use; the previously accepted one becomes current.

        Returns:
            The entry now current.

        Raises:
            CheckpointError: fewer than two models to go between.
        """
        current = self.current()
        if current is None:
            raise CheckpointError(f'{self.root}: no model in use, nothing to roll back')
        current.rolled_back = True
        current.reason = reason
        previous = self.current()
        if previous is None:
            current.rolled_back = False
            raise CheckpointError(f'{self.root}: {Path(current.path).name} is the only '
                                  f'accepted model; nothing to roll back to')
        self._write()
        return previous

    # Persistence -------------------------------------------------------------------------
    def _read(self) -> list[Entry]:
        path = self.root / HISTORY_FILE
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding='utf-8'))
            if data.get('version') != HISTORY_VERSION:
                raise ValueError(f'unknown version {data.get("version")!r}')
            return [Entry(**raw) for raw in data['entries']]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f'{path}: unreadable checkpoint history: {exc}') from exc

    def _write(self) -> None:
        data: dict[str, Any] = {'version': HISTORY_VERSION,
                                'entries': [asdict(e) for e in self.entries]}

        def write(f: IO[str]) -> None:
            json.dump(data, f, indent=2)
            f.write('\n')

        write_text_atomic(self.root / HISTORY_FILE, write)
