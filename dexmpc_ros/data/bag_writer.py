"""
Crash-safe rosbag2 (MCAP) writer fed with already-serialized CDR messages.

A bag is a directory ``<name>/`` holding closed MCAP segments ``<name>_<i>.mcap`` and a
standard rosbag2 ``metadata.yaml`` (the fields the ``rosbags`` Writer writes, which
``ros2 bag`` and ``rosbags.rosbag2.Reader`` both read). The segment being written lives
in ``<name>/.partial/`` until the next rotation (every ``flush_period_s``): it is then
closed by a ``rosbags`` Writer, moved next to the others and metadata.yaml is rewritten
atomically (temp file + ``os.replace``) to list it. A process killed at any instant
therefore leaves a bag that opens and holds everything up to the last rotation; only
the ``.partial`` segment is lost.

Writing happens on a background thread fed by a bounded queue: :meth:`BagWriter.write`
never blocks, and counts a message as dropped when the queue is full.

Metadata version 8 (default) stores QoS profiles as a YAML string with numeric enums and
is read by Humble and Jazzy ``ros2 bag``; version 9 (what Jazzy writes) stores them as a
YAML list with named enums and is read by Jazzy only.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.files import fsync_path, write_text_atomic

log = logging.getLogger(__name__)

#: Type definitions used for standard messages (hashes match ROS 2 Jazzy).
DEFAULT_STORE = Stores.ROS2_JAZZY
PARTIAL_DIR = '.partial'
#: rosbag2 writes this for "no deadline/lifespan/lease" (``RMW_DURATION_INFINITE``).
_INFINITE = QosTime(2147483647, 4294967295)


@dataclass(frozen=True)
class BagWriterConfig:
    """
    Bag writer settings.

    Attributes:
        flush_period_s: seconds between segment rotations; a crash loses at most this much.
        queue_size: messages waiting for the writer thread before new ones are dropped.
        max_queue_bytes: payload bytes waiting before new messages are dropped (images).
        version: rosbag2 metadata version, 8 (Humble and Jazzy) or 9 (Jazzy).
        fsync: fsync each closed segment and metadata.yaml (survives power loss too).
    """

    flush_period_s: float = 1.0
    queue_size: int = 10000
    max_queue_bytes: int = 512 * 2**20
    version: int = 8
    fsync: bool = True

    def __post_init__(self) -> None:
        if not self.flush_period_s > 0:
            raise ValueError(f'flush_period_s must be > 0, got {self.flush_period_s}')
        if self.queue_size < 1:
            raise ValueError(f'queue_size must be >= 1, got {self.queue_size}')
        if self.max_queue_bytes < 1:
            raise ValueError(f'max_queue_bytes must be >= 1, got {self.max_queue_bytes}')
        if self.version not in (8, 9):
            raise ValueError(f'version must be 8 or 9, got {self.version}')


@dataclass(frozen=True)
class BagStats:
    """
    What a writer has done so far.

    Attributes:
        messages: messages handed to the MCAP writer (open segment included).
        flushed: messages in closed segments: what survives a crash.
        dropped: messages refused because the queue was full or the writer closed/failed.
        segments: closed segment files.
        bytes: size of the closed segment files [B].
        pending: messages waiting in the queue.
        error: why the writer thread stopped; empty while healthy.
    """

    messages: int = 0
    flushed: int = 0
    dropped: int = 0
    segments: int = 0
    bytes: int = 0
    pending: int = 0
    error: str = ''


def qos_profile(reliability: str = 'reliable', durability: str = 'volatile',
                depth: int = 10) -> Qos:
    """
    A publisher's offered QoS as stored in rosbag2 metadata.

    Args:
        reliability: ``reliable`` or ``best_effort``.
        durability: ``volatile`` or ``transient_local``.
        depth: keep-last history depth.
    """
    try:
        rel = QosReliability[reliability.upper()]
        dur = QosDurability[durability.upper()]
    except KeyError as exc:
        raise ValueError(f'unknown QoS policy value {exc}') from exc
    return Qos(QosHistory.KEEP_LAST, int(depth), rel, dur, _INFINITE, _INFINITE,
               QosLiveliness.AUTOMATIC, _INFINITE, False)


@dataclass(frozen=True)
class _Topic:
    name: str
    msgtype: str
    msgdef: str
    rihs01: str
    qos: tuple[Qos, ...]


@dataclass
class _Segment:
    """The open segment: a rosbags Writer in ``.partial`` plus its running totals."""

    index: int
    writer: Writer
    connections: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    messages: int = 0


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


_STOP = object()


class BagWriter:
    """
    Write serialized messages to a new rosbag2 MCAP bag directory.

    Thread-safe: any thread may call :meth:`write`; one background thread does the IO.

    Args:
        path: bag directory to create; it must not exist.
        config: writer settings.
        typestore: message definitions (default: ROS 2 Jazzy standard types).
        custom_data: string key/values stored in metadata.yaml ``custom_data``.

    Raises:
        BagError: the directory exists or cannot be created.
    """

    def __init__(self, path: str | Path, config: BagWriterConfig | None = None,
                 typestore: Typestore | None = None,
                 custom_data: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.config = config or BagWriterConfig()
        self._store = typestore or get_typestore(DEFAULT_STORE)
        self._custom = {str(k): str(v) for k, v in (custom_data or {}).items()}
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise BagError(f'{self.path} exists already; a bag is never overwritten') from None
        except OSError as exc:
            raise BagError(f'{self.path}: cannot create bag directory ({exc})') from exc
        self._partial = self.path / PARTIAL_DIR
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(self.config.queue_size)
        self._topics: dict[str, _Topic] = {}
        self._pending_bytes = 0
        self._dropped = 0
        self._closed = False
        self._error = ''
        # Totals of closed segments, touched by the writer thread only (read under _lock).
        self._files: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self._bytes = 0
        self._written = 0
        self._segment: _Segment | None = None
        self._next_index = 0
        try:
            self._write_metadata()
        except OSError as exc:
            raise BagError(f'{self.path}: cannot write metadata.yaml ({exc})') from exc
        self._thread = threading.Thread(target=self._run, name=f'bag:{self.path.name}',
                                        daemon=True)
        self._thread.start()

    # Caller side ------------------------------------------------------------------------
    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = (),
                  msgdef: str | None = None) -> None:
        """
        Register a topic before its first message (it is listed even if it stays silent).

        Args:
            topic: topic name as it should appear in the bag (e.g. ``/joint_states``).
            msgtype: ROS 2 type name, e.g. ``sensor_msgs/msg/JointState``.
            offered_qos: the publishers' QoS (see :func:`qos_profile`).
            msgdef: ``.msg`` text for a type the typestore does not know.

        Raises:
            BagError: the type is unknown, or the topic was registered with another type.
        """
        with self._lock:
            known = self._topics.get(topic)
            if known is not None:
                if known.msgtype != msgtype:
                    raise BagError(f'{self.path}: topic {topic} is {known.msgtype}, '
                                   f'cannot also record it as {msgtype}')
                return
            self._topics[topic] = self._describe(topic, msgtype, tuple(offered_qos), msgdef)
            self._counts.setdefault(topic, 0)

    def _describe(self, topic: str, msgtype: str, qos: tuple[Qos, ...],
                  msgdef: str | None) -> _Topic:
        if msgdef is not None:
            try:
                self._store.register(get_types_from_msg(msgdef, msgtype))
            except Exception as exc:  # noqa: BLE001 - rosbags raises several parser errors
                raise BagError(f'{self.path}: bad definition of {msgtype}: {exc}') from exc
        if msgtype not in self._store.fielddefs:
            raise BagError(f'{self.path}: message type {msgtype} of topic {topic} is not '
                           f'in the typestore; pass its .msg text as msgdef')
        text, _ = self._store.generate_msgdef(msgtype, ros_version=2)
        return _Topic(topic, msgtype, text, self._store.hash_rihs01(msgtype), qos)

    def write(self, topic: str, msgtype: str, data: bytes | memoryview,
              timestamp_ns: int) -> bool:
        """
        Queue one serialized (CDR) message; never blocks.

        Args:
            topic: topic name (registered on first use if :meth:`add_topic` was not called).
            msgtype: its ROS 2 type name.
            data: the serialized message, stored as is.
            timestamp_ns: receive time [ns] (the bag's time axis).

        Returns:
            True if queued, False if dropped (queue full, writer closed or failed).

        Raises:
            BagError: unknown type, or a type different from the topic's registered one.
        """
        known = self._topics.get(topic)
        if known is None or known.msgtype != msgtype:
            self.add_topic(topic, msgtype)
        payload = data if isinstance(data, bytes) else bytes(data)
        with self._lock:
            if self._closed or self._error or \
                    self._pending_bytes + len(payload) > self.config.max_queue_bytes:
                self._dropped += 1
                return False
            try:
                self._queue.put_nowait((topic, payload, int(timestamp_ns)))
            except queue.Full:
                self._dropped += 1
                return False
            self._pending_bytes += len(payload)
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """
        Close the current segment now (after every message queued before this call).

        Returns:
            True once the segment is on disk and listed in metadata.yaml; False on timeout
            or when the writer is closed.
        """
        if self._closed or not self._thread.is_alive():
            return False
        marker = _Flush(threading.Event())
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stats(self) -> BagStats:
        """Counters so far; ``error`` is non-empty once the writer thread failed."""
        with self._lock:
            return BagStats(self._written, sum(f['message_count'] for f in self._files),
                            self._dropped, len(self._files), self._bytes, self._queue.qsize(),
                            self._error)

    def close(self, timeout: float = 30.0) -> BagStats:
        """
        Write every queued message, close the last segment, finalize metadata.yaml.

        Idempotent: later calls return the final stats.

        Raises:
            BagError: the writer thread failed (the bag still holds the closed segments).
        """
        with self._lock:
            first = not self._closed
            self._closed = True
        if first:
            deadline = time.monotonic() + timeout
            while self._thread.is_alive():
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    if time.monotonic() > deadline:
                        break
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                self._fail(f'writer thread did not finish within {timeout} s')
            elif not self._error:
                shutil.rmtree(self._partial, ignore_errors=True)
        stats = self.stats()
        if stats.error:
            raise BagError(f'{self.path}: {stats.error}')
        return stats

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        period = self.config.flush_period_s
        deadline = time.monotonic() + period
        try:
            while True:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    item = None
                if item is _STOP:
                    had_segment = self._segment is not None
                    self._rotate()
                    if not had_segment:
                        # no segment to close, so _rotate wrote nothing: still list the
                        # registered topics (a silent topic is part of the recording)
                        self._write_metadata()
                    return
                if isinstance(item, _Flush):
                    self._rotate()
                    item.done.set()
                elif item is not None:
                    self._append(*item)
                if time.monotonic() >= deadline:
                    self._rotate()
                    deadline = time.monotonic() + period
        except Exception as exc:  # noqa: BLE001 - any IO failure must reach the caller
            log.exception('bag writer for %s failed', self.path)
            self._fail(f'{type(exc).__name__}: {exc}')
            self._abort_segment()

    def _fail(self, message: str) -> None:
        with self._lock:
            self._error = self._error or message

    def _append(self, topic: str, payload: bytes, timestamp_ns: int) -> None:
        with self._lock:
            self._pending_bytes -= len(payload)
            self._written += 1
            info = self._topics[topic]
        seg = self._segment
        if seg is None:
            seg = self._segment = self._open_segment()
        conn = seg.connections.get(topic)
        if conn is None:
            conn = seg.connections[topic] = seg.writer.add_connection(
                topic, info.msgtype, msgdef=info.msgdef, rihs01=info.rihs01,
                offered_qos_profiles=list(info.qos))
            seg.counts[topic] = 0
        seg.writer.write(conn, timestamp_ns, payload)
        seg.counts[topic] += 1
        seg.messages += 1
        seg.start_ns = min(seg.start_ns, timestamp_ns)
        seg.end_ns = max(seg.end_ns, timestamp_ns)

    def _segment_name(self, index: int) -> str:
        return f'{self.path.name}_{index}'

    def _open_segment(self) -> _Segment:
        index = self._next_index
        self._next_index += 1
        self._partial.mkdir(exist_ok=True)
        writer = Writer(self._partial / self._segment_name(index),
                        version=self.config.version, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        return _Segment(index, writer)

    def _rotate(self) -> None:
        seg, self._segment = self._segment, None
        if seg is None:
            return
        seg.writer.close()
        name = self._segment_name(seg.index)
        source = self._partial / name / f'{name}.mcap'
        target = self.path / f'{name}.mcap'
        if self.config.fsync:
            fsync_path(source)
        os.replace(source, target)
        shutil.rmtree(self._partial / name, ignore_errors=True)
        with self._lock:
            self._files.append({
                'path': target.name,
                'starting_time': {'nanoseconds_since_epoch': seg.start_ns},
                'duration': {'nanoseconds': seg.end_ns - seg.start_ns},
                'message_count': seg.messages,
            })
            for topic, count in seg.counts.items():
                self._counts[topic] = self._counts.get(topic, 0) + count
            self._bytes += target.stat().st_size
        self._write_metadata()

    def _abort_segment(self) -> None:
        seg, self._segment = self._segment, None
        if seg is not None:
            try:
                seg.writer.abort()
            except Exception:  # noqa: BLE001 - already failing; keep the first error
                log.debug('abort of segment %d failed', seg.index, exc_info=True)

    # metadata.yaml ----------------------------------------------------------------------
    def _write_metadata(self) -> None:
        with self._lock:
            files = list(self._files)
            counts = dict(self._counts)
            topics = dict(self._topics)
        text = yaml.dump(self._metadata(files, counts, topics), Dumper=_Dumper,
                         sort_keys=False, default_flow_style=False)
        write_text_atomic(self.path / 'metadata.yaml', lambda out: out.write(text),
                          fsync=self.config.fsync)

    def _metadata(self, files: list[dict[str, Any]], counts: dict[str, int],
                  topics: dict[str, _Topic]) -> dict[str, Any]:
        start = min((f['starting_time']['nanoseconds_since_epoch'] for f in files), default=0)
        end = max((f['starting_time']['nanoseconds_since_epoch'] + f['duration']['nanoseconds']
                   for f in files), default=0)
        dump_qos = dump_qos_v9 if self.config.version >= 9 else dump_qos_v8
        return {'rosbag2_bagfile_information': {
            'version': self.config.version,
            'storage_identifier': 'mcap',
            'duration': {'nanoseconds': end - start},
            'starting_time': {'nanoseconds_since_epoch': start},
            'message_count': sum(f['message_count'] for f in files),
            'topics_with_message_count': [
                {'topic_metadata': {'name': t.name, 'type': t.msgtype,
                                    'serialization_format': 'cdr',
                                    'offered_qos_profiles': dump_qos(list(t.qos)),
                                    'type_description_hash': t.rihs01},
                 'message_count': counts.get(t.name, 0)}
                for t in topics.values()],
            'compression_format': '',
            'compression_mode': '',
            'relative_file_paths': [f['path'] for f in files],
            'files': files,
            'custom_data': dict(self._custom) or None,
            'ros_distro': 'rosbags',
        }}


class _Dumper(getattr(yaml, 'CSafeDumper', yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML dumper (C when available: metadata is rewritten every rotation)."""
