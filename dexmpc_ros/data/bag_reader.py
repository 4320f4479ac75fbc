"""
Read rosbag2 bags (MCAP or SQLite segments) into messages, arrays and episodes.

:func:`read_bag` is all-or-nothing: it checks metadata.yaml, reads every segment, checks
the message counts against the metadata and only then returns, so a corrupt bag raises
:class:`~dexmpc_ros.core.errors.BagError` (naming the file) and is never half-loaded.
:func:`iter_messages` streams instead, and may raise after yielding some messages.

Time: each message carries two stamps. The bag timestamp (receive time, ns) orders the
bag and splits it into episodes; ``header.stamp`` (when a message has one) is the time
of the observation itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from dexmpc_ros.core.errors import BagError

#: ``(bag timestamp [ns], deserialized message)``
Stamped = tuple[int, Any]
EPISODE_TOPIC = 'episode'


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
                  typestore: Typestore | None = None) -> Iterator[tuple[str, int, Any]]:
    """
    Stream ``(topic, bag timestamp [ns], message)`` segment by segment.

    Args:
        path: bag directory.
        topics: names to keep (see :func:`resolve_topics`); None keeps all.
        typestore: message definitions; default ROS 2 Jazzy, extended with any definition
            a segment carries for a type it lacks.

    Raises:
        BagError: naming the file, for bad metadata or an unreadable/corrupt segment
            (possibly after some messages were yielded).
    """
    info = bag_info(path)
    keep = None if topics is None else set(resolve_topics(info.topics, topics).values())
    store = typestore or get_typestore(Stores.ROS2_JAZZY)
    for segment in info.files:
        yield from _read_segment(segment, keep, store)


def read_bag(path: str | Path, topics: Sequence[str] | None = None,
             typestore: Typestore | None = None) -> dict[str, list[Stamped]]:
    """
    Load a whole bag: ``{topic: [(bag timestamp [ns], message), ...]}`` in time order.

    Topics listed in the metadata but silent map to empty lists.

    Raises:
        BagError: naming the file, for bad metadata, an unreadable/corrupt segment, or
            segments whose message counts disagree with metadata.yaml.
    """
    info = bag_info(path)
    names = list(info.topics) if topics is None else \
        list(resolve_topics(info.topics, topics).values())
    out: dict[str, list[Stamped]] = {name: [] for name in names}
    for topic, stamp, msg in iter_messages(path, names, typestore):
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
                if conn.msgtype not in store.fielddefs and conn.msgdef.data:
                    store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
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
        stamps[row] = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
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
    """Episode ``index`` spans bag time ``[start_ns, end_ns)``."""

    index: int
    start_ns: int
    end_ns: int

    def contains(self, t_ns: int) -> bool:
        """True if bag time ``t_ns`` falls in this episode."""
        return self.start_ns <= t_ns < self.end_ns


def episodes(bag: dict[str, list[Stamped]], topic: str = EPISODE_TOPIC) -> list[Episode]:
    """
    Split bag time into episodes with the ``episode`` topic (std_msgs/Int32).

    Each ``episode`` message starts episode ``data`` at its bag timestamp; an episode
    ends where the next one starts, the last one just after the bag's last message.
    Messages before the first ``episode`` message belong to no episode.

    Args:
        bag: as returned by :func:`read_bag` (with the episode topic and the others).
        topic: episode topic name (relative names match any namespace).

    Raises:
        BagError: the bag has no episode topic.
    """
    name = resolve_topics(bag, [topic])[topic]
    starts = sorted((t, int(msg.data)) for t, msg in bag[name])
    last = max((msgs[-1][0] for msgs in bag.values() if msgs), default=0)
    result = []
    for i, (t, index) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else max(last, t) + 1
        result.append(Episode(index, t, end))
    return result


def episode_slices(receive_ns: np.ndarray, eps: Sequence[Episode]) -> list[slice]:
    """Row ranges of a time-sorted ``receive_ns`` (T,) that fall in each episode."""
    return [slice(*_span(receive_ns, ep.start_ns, ep.end_ns)) for ep in eps]


def _span(sorted_ns: np.ndarray, start_ns: int, end_ns: int | None) -> tuple[int, int]:
    lo = int(np.searchsorted(sorted_ns, start_ns, side='left'))
    hi = len(sorted_ns) if end_ns is None else \
        int(np.searchsorted(sorted_ns, end_ns, side='left'))
    return lo, hi
