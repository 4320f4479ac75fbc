"""fault_trials.clear_of_episode_end: a trial's watch window never straddles a twin reset."""

from __future__ import annotations

import pytest

pytest.importorskip('rclpy')

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.ros import fault_trials  # noqa: E402
from dexmpc_ros.ros.fault_trials import clear_of_episode_end, episode_seconds  # noqa: E402
from dexmpc_ros.runtime.experiment import load_experiment  # noqa: E402


class EpisodeStream:
    """
    The two GraphProbe calls the helper makes, on a simulated clock (``time_ns``, patched
    into fault_trials): an ``episode`` message every ``period_s``.
    """

    def __init__(self, last_reset_ago_s: float | None, period_s: float) -> None:
        self.now_ns = now = 1_000 * 10**9
        self.period_ns = int(period_s * 1e9)
        self.received = {'episode': [] if last_reset_ago_s is None else
                         [(now - int(last_reset_ago_s * 1e9), None)]}
        self.next_ns = (now + self.period_ns - int(last_reset_ago_s * 1e9)
                        if last_reset_ago_s is not None else now + self.period_ns // 2)
        self.waited_s = 0.0

    def time_ns(self) -> int:
        return self.now_ns

    def _advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)
        self.waited_s += seconds
        while self.now_ns >= self.next_ns:
            self.received['episode'].append((self.next_ns, None))
            self.next_ns += self.period_ns

    def spin_until(self, condition, timeout_s: float, what: str) -> None:
        start_ns = self.now_ns
        while not condition():
            assert (self.now_ns - start_ns) * 1e-9 < timeout_s, what
            self._advance(0.01)

    def spin_for(self, seconds: float) -> None:
        self._advance(seconds)


@pytest.fixture
def stream(monkeypatch):
    """Make an EpisodeStream whose clock fault_trials reads."""
    def make(last_reset_ago_s: float | None, period_s: float) -> EpisodeStream:
        probe = EpisodeStream(last_reset_ago_s, period_s)
        monkeypatch.setattr(fault_trials, 'time', probe)
        return probe
    return make


def test_a_window_well_inside_the_episode_starts_at_once(stream):
    probe = stream(last_reset_ago_s=0.2, period_s=3.0)
    clear_of_episode_end(probe, episode_s=3.0, window_s=1.0, lead_s=0.1)
    assert probe.waited_s == 0.0


@pytest.mark.parametrize('ago_s', [1.8, None])
def test_a_window_near_the_reset_or_unknown_phase_waits_for_the_next_episode(stream, ago_s):
    probe = stream(last_reset_ago_s=ago_s, period_s=3.0)
    clear_of_episode_end(probe, episode_s=3.0, window_s=1.0, lead_s=0.1)
    resets = probe.received['episode']
    last_reset_ago_s = (probe.now_ns - resets[-1][0]) * 1e-9
    assert len(resets) == (2 if ago_s is not None else 1)
    # the window now starts lead_s after a fresh reset: 1 s of it fits before the next one
    assert 0.1 <= last_reset_ago_s < 0.12
    assert last_reset_ago_s + 1.0 < 3.0


def test_episode_seconds_of_the_widowx_scripted_experiment():
    spec = load_robot_spec('widowx')
    assert episode_seconds(load_experiment('widowx_scripted_sim'), spec) == pytest.approx(10.0)
