"""
Read rosbag2 bags (MCAP or SQLite segments) into messages, arrays and episodes.

:func:`read_bag` is all-or-nothing: it checks metadata.yaml, reads every segment, checks
the message counts against the metadata and only then returns, so a corrupt bag raises
:class:`~dexmpc_ros.core.errors.BagError` (naming the file) and is never half-loaded.
:func:`iter_messages` streams instead, and may raise after yielding some messages.

Both read the segments one :class:`BagInfo` lists, with its counts: pass the ``info`` you
already read, so that a segment the recorder closed since (it rewrites metadata.yaml at
every rotation) is left out instead of failing the count check.

Time: each message carries two stamps. The bag timestamp (receive time, ns) orders the
bag; ``header.stamp`` (when a message has one) is the time of the observation itself.

Episodes. At a reset the twin publishes ``episode`` (std_msgs/Int32, the new episode's
number), ``episode_start`` (std_msgs/Header: ``stamp`` is the stamp of the new episode's
first state, ``frame_id`` its number in decimal), then that first state (the *reset
state*); its state stamps strictly increase, even across a reset under simulated time.
The recorder receives each topic on its own subscription, so at a reset the bag times of
different topics race (the previous episode's last state is often received after
``episode``), while each topic keeps its publication order. Bag time therefore cannot
split states exactly; header stamps can: :func:`split_states` puts a state in episode
``k`` if its stamp is ``>=`` episode ``k``'s start stamp and ``<`` episode ``k + 1``'s.
Episodes known only from ``episode`` (bags recorded before the twin published
``episode_start``, or resets before the recorder heard the first ``episode_start``) fall
back to bag time, shifted half a control tick: the reset state is the last state
received no later than half a tick after the ``episode`` message. That fallback assumes
automatic resets (``episode_steps`` or the task ending the episode): a reset by the
``reset_episode`` service starts a tick, so the first step's state comes with the reset
and is misread as the reset state. Topics without a header (``reward``) are split by
:func:`split_ticks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.message_fields import stamp_to_ns
from dexmpc_ros.data.bag_types import register_connection_type

#: ``(bag timestamp [ns], deserialized message)``
Stamped = tuple[int, Any]
EPISODE_TOPIC = 'episode'
#: the episode-start marker topic is the episode topic's name plus this (``episode_start``)
START_SUFFIX = '_start'


@dataclass(frozen=True)
class TopicInfo:
    """One topic as metadata.yaml lists it."""

    name: str
    msgtype: str
    message_count: int


@dataclass(frozen=True)
class BagInfo:
    """The validated content of metadata.yaml."""

    path: Path
    version: int
    storage: str
    start_ns: int
    duration_ns: int
    message_count: int
    topics: dict[str, TopicInfo]
    files: tuple[Path, ...]


def bag_info(path: str | Path) -> BagInfo:
    """
    Read and check a bag's metadata.yaml.

    Raises:
        BagError: missing directory or metadata.yaml, invalid YAML, a missing or mistyped
            key, compression (not supported), or a listed segment that does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        raise BagError(f'{path}: no such bag directory')
    meta_path = path / 'metadata.yaml'
    try:
        doc = yaml.safe_load(meta_path.read_text())
    except FileNotFoundError:
        raise BagError(f'{meta_path}: missing; not a rosbag2 directory (or a run killed '
                       f'before its first write)') from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BagError(f'{meta_path}: unreadable: {exc}') from exc
    try:
        meta = doc['rosbag2_bagfile_information']
        topics = {}
        for entry in meta['topics_with_message_count']:
            t = entry['topic_metadata']
            topics[str(t['name'])] = TopicInfo(str(t['name']), str(t['type']),
                                               int(entry['message_count']))
        info = BagInfo(path, int(meta['version']), str(meta['storage_identifier']),
                       int(meta['starting_time']['nanoseconds_since_epoch']),
                       int(meta['duration']['nanoseconds']), int(meta['message_count']),
                       topics, tuple(path / Path(p).name for p in meta['relative_file_paths']))
        compression = meta.get('compression_mode') or ''
    except (KeyError, TypeError, ValueError) as exc:
        raise BagError(f'{meta_path}: invalid rosbag2 metadata ({type(exc).__name__}: '
                       f'{exc})') from exc
    if compression and compression.lower() != 'none':
        raise BagError(f'{meta_path}: compressed bags ({compression}) are not supported')
    missing = [str(f) for f in info.files if not f.is_file()]
    if missing:
        raise BagError(f'{meta_path}: lists segment files that do not exist: {missing}')
    return info


def resolve_topics(available: Iterable[str], wanted: Sequence[str]) -> dict[str, str]:
    """
    Map each wanted name to a topic of the bag.

    An absolute name (``/a/b``) must match exactly; a relative one (``joint_states``)
    matches the one topic ending in ``/joint_states`` (any namespace).

    Raises:
        BagError: a name matches no topic, or a relative name matches several.
    """
    available = list(available)
    resolved = {}
    for name in wanted:
        if name.startswith('/'):
            hits = [t for t in available if t == name]
        else:
            hits = [t for t in available if t == name or t.endswith('/' + name)]
        if len(hits) != 1:
            what = 'no topic' if not hits else f'several topics {hits}'
            raise BagError(f'{name!r} matches {what}; bag topics: {sorted(available)}')
        resolved[name] = hits[0]
    return resolved


def iter_messages(path: str | Path, topics: Sequence[str] | None = None,
                  typestore: Typestore | None = None,
                  info: BagInfo | None = None) -> Iterator[tuple[str, int, Any]]:
    """
    Stream ``(topic, bag timestamp [ns], message)`` segment by segment.

    Args:
        path: bag directory.
        topics: names to keep (see :func:`resolve_topics`); None keeps all.
        typestore: message definitions; default ROS 2 Jazzy, extended with any definition
            a segment carries for a type it lacks (:mod:`~dexmpc_ros.data.bag_types`).
        info: the bag's metadata as read before; only the segments it lists are read.
            Default: read metadata.yaml now.

    Raises:
        BagError: naming the file, for bad metadata or an unreadable/corrupt segment
            (possibly after some messages were yielded).
    """
    if info is None:
        info = bag_info(path)
    keep = None if topics is None else set(resolve_topics(info.topics, topics).values())
    store = typestore or get_typestore(Stores.ROS2_JAZZY)
    for segment in info.files:
        yield from _read_segment(segment, keep, store)


def read_bag(path: str | Path, topics: Sequence[str] | None = None,
             typestore: Typestore | None = None,
             info: BagInfo | None = None) -> dict[str, list[Stamped]]:
    """
    Load a whole bag: ``{topic: [(bag timestamp [ns], message), ...]}`` in time order.

    Topics listed in the metadata but silent map to empty lists. Equal timestamps keep
    the order the bag holds them in (per topic: the order the recorder received them).

    Args:
        path: bag directory.
        topics: names to load (see :func:`resolve_topics`); None loads all.
        typestore: as :func:`iter_messages`.
        info: the bag's metadata as read before: exactly the segments and message counts
            it lists are loaded, whatever the recorder appended since. Default: read
            metadata.yaml now (once).

    Raises:
        BagError: naming the file, for bad metadata, an unreadable/corrupt segment, or
            segments whose message counts disagree with the metadata.
    """
    if info is None:
        info = bag_info(path)
    names = list(info.topics) if topics is None else \
        list(resolve_topics(info.topics, topics).values())
    out: dict[str, list[Stamped]] = {name: [] for name in names}
    for topic, stamp, msg in iter_messages(path, names, typestore, info):
        out[topic].append((stamp, msg))
    for name, msgs in out.items():
        expected = info.topics[name].message_count
        if len(msgs) != expected:
            raise BagError(f'{info.path / "metadata.yaml"}: lists {expected} messages on '
                           f'{name}, the segments hold {len(msgs)}')
        msgs.sort(key=lambda item: item[0])
    return out


def _read_segment(segment: Path, keep: set[str] | None,
                  store: Typestore) -> Iterator[tuple[str, int, Any]]:
    try:
        with Reader(segment) as reader:
            connections = [c for c in reader.connections if keep is None or c.topic in keep]
            for conn in connections:
                register_connection_type(store, conn, str(segment))
            if not connections:
                return
            for conn, stamp, raw in reader.messages(connections=connections):
                yield conn.topic, stamp, store.deserialize_cdr(raw, conn.msgtype)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags/CDR raise many types on corrupt data
        raise BagError(f'{segment}: unreadable or corrupt segment '
                       f'({type(exc).__name__}: {exc})') from exc


# Arrays ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointStateSeries:
    """
    A JointState topic (also ``task_state``, ``perception/latent``) as arrays.

    Attributes:
        receive_ns: (T,) int64 bag timestamps [ns] (sorted).
        stamps: (T,) int64 ``header.stamp`` [ns].
        names: the n entry names, in column order.
        position: (T, n) float64; NaN where a message left the field empty.
        velocity: (T, n) float64, likewise.
        effort: (T, n) float64, likewise.
    """

    receive_ns: np.ndarray
    stamps: np.ndarray
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def __len__(self) -> int:
        return int(self.receive_ns.shape[0])

    def between(self, start_ns: int, end_ns: int | None) -> JointStateSeries:
        """Rows received in ``[start_ns, end_ns)`` (``end_ns`` None: to the end)."""
        lo, hi = _span(self.receive_ns, start_ns, end_ns)
        return JointStateSeries(self.receive_ns[lo:hi], self.stamps[lo:hi], self.names,
                                self.position[lo:hi], self.velocity[lo:hi],
                                self.effort[lo:hi])


def joint_state_series(messages: Sequence[Stamped],
                       names: Sequence[str] | None = None) -> JointStateSeries:
    """
    Stack JointState messages into arrays with one column per name.

    Args:
        messages: ``(bag timestamp, JointState)`` pairs, as :func:`read_bag` returns.
        names: column order; default the first message's names.

    Raises:
        BagError: a message lacks one of the names.
    """
    if names is None:
        names = list(messages[0][1].name) if messages else []
    names = tuple(names)
    n, count = len(names), len(messages)
    fields = {f: np.full((count, n), np.nan) for f in ('position', 'velocity', 'effort')}
    receive = np.empty(count, dtype=np.int64)
    stamps = np.empty(count, dtype=np.int64)
    for row, (t, msg) in enumerate(messages):
        receive[row] = t
        stamps[row] = stamp_to_ns(msg.header.stamp)
        msg_names = tuple(msg.name)
        if msg_names == names:
            order: Any = slice(None)
        else:
            index = {name: i for i, name in enumerate(msg_names)}
            missing = [name for name in names if name not in index]
            if missing:
                raise BagError(f'JointState at t={t} ns lacks {missing}')
            order = [index[name] for name in names]
        for f, array in fields.items():
            values = np.asarray(getattr(msg, f), dtype=np.float64)
            if values.shape == (len(msg_names),):
                array[row] = values[order]
    return JointStateSeries(receive, stamps, names, fields['position'], fields['velocity'],
                            fields['effort'])


def scalar_series(messages: Sequence[Stamped], field: str = 'data'
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(bag timestamps (T,) int64, values (T,) float64)`` of e.g. std_msgs/Float64."""
    stamps = np.array([t for t, _ in messages], dtype=np.int64)
    values = np.array([float(getattr(m, field)) for _, m in messages], dtype=np.float64)
    return stamps, values


# Episodes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    """
    Episode ``index``: bag time ``[start_ns, end_ns)`` and, when known, its start stamp.

    Bag time races at a reset (see the module docstring), so ``start_ns``/``end_ns`` place
    an episode to within a control tick only; split states with :func:`split_states`.

    Attributes:
        index: the episode's number (the twin counts from 0).
        start_ns: bag time of its ``episode_start`` message (of its ``episode`` message
            when ``stamp_ns`` is None).
        end_ns: bag time where the next episode starts; for the last one, just after the
            bag's last message.
        stamp_ns: header stamp of its first state (``episode_start``); None when the bag
            knows the episode from ``episode`` only.
    """

    index: int
    start_ns: int
    end_ns: int
    stamp_ns: int | None = None

    def contains(self, t_ns: int) -> bool:
        """True if bag time ``t_ns`` falls in this episode (to within a tick at resets)."""
        return self.start_ns <= t_ns < self.end_ns


def episodes(bag: dict[str, list[Stamped]], topic: str = EPISODE_TOPIC) -> list[Episode]:
    """
    The episodes of a bag, in order, from its ``episode`` and ``episode_start`` topics.

    Each ``episode_start`` message (on ``<episode topic>_start``) is an episode with its
    start stamp. Each ``episode`` message numbered below the first ``episode_start`` (all
    of them in a bag without one) is an episode known by bag time only, placed before.

    Args:
        bag: as returned by :func:`read_bag`: the episode topic and, if the bag has it,
            the ``episode_start`` topic (left out, every episode falls back to bag time).
        topic: episode topic name (relative names match any namespace).

    Raises:
        BagError: the bag has no episode topic, or an ``episode_start`` ``frame_id`` is
            not an episode number.
    """
    name = resolve_topics(bag, [topic])[topic]
    marks = []
    for t, msg in bag.get(name + START_SUFFIX, []):
        try:
            index = int(msg.frame_id)
        except ValueError:
            raise BagError(f'{name}{START_SUFFIX} at bag time {t} ns: frame_id '
                           f'{msg.frame_id!r} is not an episode number') from None
        marks.append((stamp_to_ns(msg.stamp), t, index))
    marks.sort()
    first = marks[0][2] if marks else None
    starts: list[tuple[int, int, int | None]] = sorted(
        (t, int(msg.data), None) for t, msg in bag[name]
        if first is None or int(msg.data) < first)
    starts += [(t, index, stamp) for stamp, t, index in marks]
    last = max((msgs[-1][0] for msgs in bag.values() if msgs), default=0)
    result = []
    for i, (t, index, stamp) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else max(last, t) + 1
        result.append(Episode(index, t, end, stamp))
    return result


@dataclass(frozen=True)
class StateEpisodes:
    """
    The episode of each row of a state series (see :func:`split_states`).

    Attributes:
        episodes: the bag's episodes (:func:`episodes`).
        position: (T,) int64 index into ``episodes`` of each row's episode; -1 for a row
            before the first episode.
        reset: (T,) bool: the row is its episode's reset state (published at the reset,
            before any step: no reward goes with it).
    """

    episodes: tuple[Episode, ...]
    position: np.ndarray
    reset: np.ndarray

    def rows(self, k: int) -> np.ndarray:
        """Rows of ``episodes[k]``, in series order."""
        return np.flatnonzero(self.position == k)


def split_states(series: JointStateSeries, eps: Sequence[Episode]) -> StateEpisodes:
    """
    The episode of each state of a per-tick state topic (``joint_states``, ``task_state``).

    A row belongs to the episode with the latest start stamp at or before its
    ``header.stamp``; the row stamped with the start stamp itself is the reset state. A
    row stamped before every start stamp goes to the episodes known by bag time only
    (module docstring): such an episode's reset state is the last row received up to half
    a tick (half the median interval between rows) after its ``episode`` message, and the
    episode runs to the next one's reset state.

    Args:
        series: the topic in the order the bag holds it (as :func:`read_bag` returns it:
            per topic, publication order).
        eps: the bag's episodes (:func:`episodes`).
    """
    eps = tuple(eps)
    count = len(series)
    position = np.full(count, -1, dtype=np.int64)
    reset = np.zeros(count, dtype=bool)
    by_time = np.array([k for k, ep in enumerate(eps) if ep.stamp_ns is None], dtype=np.int64)
    if by_time.size and count:
        cuts = np.array([eps[k].start_ns for k in by_time], dtype=np.int64) + \
            _half_tick(series.receive_ns)
        first = np.searchsorted(series.receive_ns, cuts, side='right') - 1
        which = np.searchsorted(first, np.arange(count), side='right') - 1
        position[which >= 0] = by_time[which[which >= 0]]
        reset[first[first >= 0]] = True
    by_stamp = np.array([k for k, ep in enumerate(eps) if ep.stamp_ns is not None],
                        dtype=np.int64)
    if by_stamp.size and count:
        starts = np.array([eps[k].stamp_ns for k in by_stamp], dtype=np.int64)
        which = np.searchsorted(starts, series.stamps, side='right') - 1
        inside = which >= 0
        position[inside] = by_stamp[which[inside]]
        reset[inside] = series.stamps[inside] == starts[which[inside]]
    return StateEpisodes(eps, position, reset)


def split_ticks(receive_ns: np.ndarray, series: JointStateSeries,
                states: StateEpisodes) -> np.ndarray:
    """
    The episode of each message of a per-tick topic without a header (``reward``).

    The twin publishes such a message right after each state it steps to, none with a
    reset state: each message goes with the step state (a row of ``series`` that is not a
    reset state) received nearest to it, which is its own state as long as the recorder
    receives the two within half a control tick of each other. Without any step state,
    by bag time instead: from half a tick (of these messages) after an episode's start.

    Args:
        receive_ns: (M,) sorted bag times of the messages [ns].
        series: the state topic ``states`` splits.
        states: :func:`split_states` of ``series``.

    Returns:
        (M,) int64 index into ``states.episodes`` (-1: before the first episode).
    """
    receive_ns = np.asarray(receive_ns, dtype=np.int64)
    steps = np.flatnonzero(~states.reset)
    if not steps.size:
        cuts = np.array([ep.start_ns for ep in states.episodes], dtype=np.int64) + \
            _half_tick(receive_ns)
        return np.searchsorted(cuts, receive_ns, side='left').astype(np.int64) - 1
    times = series.receive_ns[steps]
    after = np.minimum(np.searchsorted(times, receive_ns), len(times) - 1)
    before = np.maximum(after - 1, 0)
    nearest = np.where(receive_ns - times[before] <= np.abs(times[after] - receive_ns),
                       before, after)
    return states.position[steps[nearest]]


def episode_slices(receive_ns: np.ndarray, eps: Sequence[Episode]) -> list[slice]:
    """
    Row ranges of a time-sorted ``receive_ns`` (T,) that fall in each episode's bag time.

    Approximate at resets (bag time races); for states use :func:`split_states`.
    """
    return [slice(*_span(receive_ns, ep.start_ns, ep.end_ns)) for ep in eps]


def _half_tick(sorted_ns: np.ndarray) -> int:
    """Half the median interval between consecutive messages of a per-tick topic [ns]."""
    gaps = np.diff(np.asarray(sorted_ns, dtype=np.int64))
    gaps = gaps[gaps > 0]
    return int(np.median(gaps) // 2) if gaps.size else 0


def _span(sorted_ns: np.ndarray, start_ns: int, end_ns: int | None) -> tuple[int, int]:
    lo = int(np.searchsorted(sorted_ns, start_ns, side='left'))
    hi = len(sorted_ns) if end_ns is None else \
        int(np.searchsorted(sorted_ns, end_ns, side='left'))
    return lo, hi
