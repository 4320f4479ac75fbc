"""Live status formatting (pure) and the rate meter."""

from __future__ import annotations

import pytest

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.runtime.status import format_status


def test_status_line_shows_each_node_in_spec_order():
    status = {'nodes': {
        'twin': {'rate_hz': '10.0', 'episode': '2', 'episode_step': '37', 'reward': '-0.41',
                 'episode_return': '-18.2', 'level': 'ok'},
        'safety': {'rate_hz': '10', 'state': 'ARMED', 'passed': '120', 'clamped': '4',
                   'blocked': '1', 'held': '3', 'rule/step': '4', 'rule/age': '1',
                   'rule/finite': '0', 'rule/rate': '9', 'rule/names': '2',
                   'latency_us_p99': '84.6', 'level': 'warn', 'message': 'step fired'},
        'recorder': {'rate_hz': '95', 'messages': '1000', 'dropped': '0', 'level': 'ok'},
    }}
    line = format_status(12.0, status, ['twin', 'safety', 'controller', 'recorder'])
    parts = line.split(' | ')
    assert parts[0] == 't=12s'
    assert parts[1] == 'twin 10.0Hz ep 2 step 37 r -0.41 R -18.2'
    assert parts[2] == ('safety ARMED 10.0Hz pass 120 clamp 4 block 1 hold 3 '
                        'rules rate:9 step:4 names:2 p99 85us [WARN: step fired]')
    assert parts[3] == 'controller (no diagnostics yet)'
    assert parts[4] == 'recorder 95 msg/s 1000 msgs'


def test_rate_meter():
    meter = RateMeter(window=5, stale_after_s=1.0)
    assert meter.rate_hz(0.0) == 0.0
    for i in range(10):
        meter.tick(i * 0.1)
    assert meter.rate_hz(0.95) == pytest.approx(10.0)
    assert meter.count == 10
    assert meter.rate_hz(2.5) == 0.0       # stale
    with pytest.raises(ValueError):
        RateMeter(window=1)
