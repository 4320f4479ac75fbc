"""
One dexmpc graph per ROS domain on this machine: ``dexmpc up`` claims its ROS_DOMAIN_ID.

Two graphs in one domain exchange messages: run B's controller would command run A's robot
through A's supervisor, and each recorder would record both. ``dexmpc up`` therefore holds
an exclusive lock on ``<tmp>/dexmpc_ros_domains/<id>.lock`` for as long as it runs, and
refuses to start in a domain another run holds, naming that run. ``--domain-id auto`` takes
the highest free domain of 1..101 (ROS 2's safe range on Linux is 0..101; the test suite
counts up from 1, so runs and tests rarely meet).

A process that starts graphs itself (the test suite, bench/safety.py) *reserves* domains
with :func:`reserve_free_domain`: a second lock file, ``<id>.reserved.lock``, that other
reservers respect and that does not stop the reserver's own ``dexmpc up`` in that domain.
It skips domains a run holds, so parallel test sessions and benches never share a domain.

The lock is ``fcntl.flock``: the kernel drops it when its process exits, killed or not, so
no stale lock outlives a crashed run. It only sees dexmpc runs on this machine, not other
ROS 2 graphs.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dexmpc_ros.core.errors import DexmpcError

#: ROS 2's domain IDs that never collide with Linux's ephemeral ports.
SAFE_DOMAINS = range(0, 102)


class DomainBusyError(DexmpcError):
    """The ROS domain is held by another running dexmpc graph."""


def lock_dir() -> Path:
    """Where the domain locks live (``DEXMPC_DOMAIN_LOCKS`` overrides, for tests)."""
    return Path(os.environ.get('DEXMPC_DOMAIN_LOCKS')
                or Path(tempfile.gettempdir()) / 'dexmpc_ros_domains')


class DomainClaim:
    """An exclusive claim on one ROS domain; released by :meth:`release` or process exit."""

    def __init__(self, domain_id: int, fd: int) -> None:
        self.domain_id = domain_id
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DomainClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_claim(domain_id: int, owner: str, suffix: str = 'lock') -> DomainClaim | None:
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f'{domain_id}.{suffix}', os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f'pid {os.getpid()}: {owner}\n'.encode())
    return DomainClaim(domain_id, fd)


def holder(domain_id: int) -> str | None:
    """Who holds ``domain_id`` ("pid N: <run>"), or None if it is free."""
    claim = _try_claim(domain_id, 'probe')
    if claim is not None:
        claim.release()
        return None
    try:
        return (lock_dir() / f'{domain_id}.lock').read_text().strip() or 'another process'
    except OSError:
        return 'another process'


def claim_domain(domain_id: int | None, owner: str) -> DomainClaim:
    """
    Claim ``domain_id`` for a graph, or with None the highest free one of 1..101.

    Args:
        domain_id: the ROS_DOMAIN_ID the graph will use, or None for "any free one".
        owner: what holds it, shown to whoever is refused (the run folder).

    Raises:
        DomainBusyError: the domain is held by another run (or, for None, all are).
    """
    if domain_id is not None:
        if domain_id not in SAFE_DOMAINS:
            raise DomainBusyError(f'ROS_DOMAIN_ID {domain_id} is outside 0..101, the range '
                                  'ROS 2 can use on Linux without port clashes')
        claim = _try_claim(domain_id, owner)
        if claim is None:
            raise DomainBusyError(
                f'ROS_DOMAIN_ID {domain_id} is in use by another dexmpc run '
                f'({holder(domain_id)}): two graphs in one domain would exchange commands. '
                'Stop that run, or pass --domain-id auto (or another id).')
        return claim
    for candidate in reversed(SAFE_DOMAINS[1:]):
        claim = _try_claim(candidate, owner)
        if claim is not None:
            return claim
    raise DomainBusyError('every ROS_DOMAIN_ID of 1..101 is held by a dexmpc run')


def reserve_free_domain(candidates: Iterable[int], owner: str) -> DomainClaim:
    """
    Reserve the first of ``candidates`` that no run holds and no other reserver has.

    For code that starts graphs in domains it picks (tests, benches): the reservation keeps
    other reservers out while the caller's own ``dexmpc up`` can still claim the domain.

    Raises:
        DomainBusyError: every candidate is held or reserved (or outside 0..101).
    """
    tried = []
    for domain_id in candidates:
        tried.append(domain_id)
        if domain_id not in SAFE_DOMAINS or holder(domain_id) is not None:
            continue
        claim = _try_claim(domain_id, owner, suffix='reserved.lock')
        if claim is not None:
            return claim
    raise DomainBusyError(f'no free ROS_DOMAIN_ID among {len(tried)} candidates '
                          f'({min(tried, default="-")}..{max(tried, default="-")}): '
                          'all held by dexmpc runs or reserved by other test sessions')
