"""
The checkpoint history of one robot: which models were tried, which one is in use.

A store is a directory::

    <root>/
      history.json        every proposal, oldest first: path, time, metrics, accepted, reason
      ckpt-0001/ ...      checkpoints (learning/checkpoint.py), never overwritten or deleted

``history.json`` is rewritten atomically (temp file + fsync + rename), so a crash leaves
either the old or the new history, and a reader never sees half of it. Several processes
may change one store at once (the learner node proposing, ``dexmpc rollback`` from a
shell): every change takes an exclusive ``fcntl.flock`` on ``.history.lock`` next to the
history, re-reads the history under it, changes that and writes it back, so no change is
lost; queries re-read the file too, so a long-lived store object never acts on a stale
history. The *current* model is the newest accepted entry that
has not been rolled back; :meth:`CheckpointStore.propose` accepts a new model only if its
validation error beats the current one's (the learner never swaps in a worse model);
:meth:`CheckpointStore.rollback` marks the current one rolled back, so the one accepted
before it becomes current again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.files import write_text_atomic

HISTORY_FILE = 'history.json'
HISTORY_VERSION = 1
#: flock'ed around every read-modify-write of the history (never deleted: a process
#: holding a lock on an unlinked file would not exclude one that creates a new one)
LOCK_FILE = '.history.lock'
_CHECKPOINT_DIR = re.compile(r'ckpt-(\d+)$')


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

    ``entries`` is the history as last read: :meth:`current`, :meth:`next_path`,
    :meth:`propose` and :meth:`rollback` re-read it first (:meth:`refresh`), so changes
    other processes made in between are seen and kept.

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
    def refresh(self) -> list[Entry]:
        """Re-read ``history.json`` into ``entries`` (and return them)."""
        self.entries = self._read()
        return self.entries

    def current(self) -> Entry | None:
        """The model in use now: the newest accepted entry not rolled back (re-read)."""
        return _current(self.refresh())

    def next_path(self) -> Path:
        """
        Where the next checkpoint should be saved: ``ckpt-NNNN`` past every entry and dir.

        Past the directories too: another process may have saved a checkpoint it has not
        proposed yet (``save_checkpoint`` refuses an existing directory).
        """
        taken = [int(m.group(1)) for p in self.root.iterdir()
                 if (m := _CHECKPOINT_DIR.match(p.name))]
        return self.root / f'ckpt-{max([len(self.refresh()), *taken]) + 1:04d}'

    # Changes -----------------------------------------------------------------------------
    def propose(self, path: str | os.PathLike[str], metrics: dict[str, Any],
                baseline: float | None = None,
                baseline_path: str | os.PathLike[str] | None = None) -> Entry:
        """
        Record a saved checkpoint and decide whether it replaces the current one.

        Args:
            path: the saved checkpoint directory.
            metrics: must hold ``score`` (validation error, lower is better, finite).
            baseline: the current model's score re-measured on the same validation data
                (a fair comparison); None compares with the score it was accepted with.
            baseline_path: the checkpoint ``baseline`` was measured for. If another model
                is current by now (a rollback or another proposal while this one trained),
                ``baseline`` is ignored and the current one's own score is compared.

        Returns:
            The new entry (``accepted`` tells the caller whether to publish it).
        """
        score = metrics.get('score')
        if not isinstance(score, (int, float)) or score != score or abs(score) == float('inf'):
            raise ValueError(f'metrics need a finite "score", got {score!r}')
        with self._locked():
            return self._propose(Path(path).absolute(), metrics, baseline, baseline_path)

    def _propose(self, path: Path, metrics: dict[str, Any], baseline: float | None,
                 baseline_path: str | os.PathLike[str] | None) -> Entry:
        score = metrics['score']
        current = _current(self.entries)
        if current is not None and baseline_path is not None and \
                Path(baseline_path).absolute() != Path(current.path):
            baseline = None  # measured for a model that is no longer in use
        if current is None:
            accepted, reason = True, 'first model'
        else:
            reference = current.metrics['score'] if baseline is None else baseline
            bound = reference * (1.0 - self.min_improvement)
            accepted = score < bound
            reason = (f'score {score:.4g} {"<" if accepted else ">="} {bound:.4g} '
                      f'(current {Path(current.path).name}: {reference:.4g}'
                      f'{" on the same data" if baseline is not None else ""})')
        entry = Entry(str(path), time.time(), dict(metrics), accepted, reason)
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
        with self._locked():
            return self._rollback(reason)

    def _rollback(self, reason: str) -> Entry:
        current = _current(self.entries)
        if current is None:
            raise CheckpointError(f'{self.root}: no model in use, nothing to roll back')
        current.rolled_back = True
        current.reason = reason
        previous = _current(self.entries)
        if previous is None:
            current.rolled_back = False
            raise CheckpointError(f'{self.root}: {Path(current.path).name} is the only '
                                  f'accepted model; nothing to roll back to')
        self._write()
        return previous

    # Persistence -------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock, with ``entries`` re-read under it, while changing them."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also if the process dies
            self.refresh()
            yield
        finally:
            os.close(fd)

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


def _current(entries: list[Entry]) -> Entry | None:
    """The newest accepted entry not rolled back."""
    for entry in reversed(entries):
        if entry.accepted and not entry.rolled_back:
            return entry
    return None
