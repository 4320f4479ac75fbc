"""ros/latency.py's pairing: a tick's bare and supervised messages meet by tick number."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy')

from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.latency import _pair, tick_stamp_ns  # noqa: E402


def received(stamps_ns, delays_ns):
    """[(arrival ns, msg)] for messages stamped ``stamps_ns`` arriving ``delays_ns`` later."""
    return [(s + d, convert.command_msg(s, ['a'], np.zeros(1), 'position'))
            for s, d in zip(stamps_ns, delays_ns)]


def test_a_tick_whose_two_publishes_load_pushed_apart_still_pairs():
    start = 10**18
    ticks = range(5)
    bare = [tick_stamp_ns(start + 10_000_000 * k, k) for k in ticks]
    # the supervised copy of tick 2 was published 7 ms after its bare one (preempted)
    path = [tick_stamp_ns(start + 10_000_000 * k + (7_000_000 if k == 2 else 50_000), k)
            for k in ticks]
    result = _pair(received(bare, [500_000] * 5), received(path, [1_500_000] * 5), start)
    assert len(result.added_us) == 5
    np.testing.assert_allclose(result.added_us, 1000.0, atol=1.0)  # 1.5 ms - 0.5 ms


def test_a_tick_without_its_bare_message_is_left_out():
    start = 10**18
    bare = [tick_stamp_ns(start + 10_000_000 * k, k) for k in (0, 1, 3)]
    path = [tick_stamp_ns(start + 10_000_000 * k + 50_000, k) for k in (0, 1, 2, 3)]
    result = _pair(received(bare, [500_000] * 3), received(path, [900_000] * 4), start)
    assert len(result.path_us) == 4 and len(result.added_us) == 3


def test_tick_stamp_keeps_the_microseconds_and_carries_the_tick():
    assert tick_stamp_ns(1_234_567_891, 1_007) == 1_234_567_007
