"""
The run report (runtime/report.py and its run_records, run_bag, report_content and
report_plots modules; `dexmpc report`, the end of `dexmpc up`).

A synthetic run folder stands in for a real one: spec.yaml, logs, a bag written with the
project's BagWriter the way the recorder receives the twin's messages (including the
receive-order race at resets), diagnostics as the mpc and safety nodes publish them, and a
models/history.json made by the real CheckpointStore. Every expected number below follows
from the values written.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.message_fields import ns_to_sec_nanosec
from dexmpc_ros.data.bag_writer import BagWriter
from dexmpc_ros.learning.store import CheckpointStore
from dexmpc_ros.runtime import cli
from dexmpc_ros.runtime.report import build_report, write_report
from dexmpc_ros.runtime.report_plots import PLOTS
from dexmpc_ros.runtime.run_bag import run_episodes, swaps_from_diagnostics
from dexmpc_ros.runtime.run_records import RunOutcome, SuccessRule, Swap, git_commit
from dexmpc_ros.runtime.runner import RunResult

STORE = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = 'sensor_msgs/msg/JointState'
FLOAT64 = 'std_msgs/msg/Float64'
INT32 = 'std_msgs/msg/Int32'
DIAGNOSTICS = 'diagnostic_msgs/msg/DiagnosticArray'
VALVE_NAMES = ['valve_angle', 'valve_velocity', 'target_angle', 'angle_error']

T0 = 1_700_000_000 * 10**9   # wall clock [ns]: the run is not in simulated time
PERIOD = 100_000_000         # 10 Hz
US = 1_000                   # [ns]
STEPS = 4                    # twin.episode_steps
#: |angle_error| at each episode's last step (episode 9 never finishes)
FINAL = {0: 0.0, 1: 0.5, 2: 0.1, 3: -0.3, 4: -0.2, 5: 0.26, 6: 0.05, 7: -0.249, 8: 0.9,
         9: 0.0}
#: the mpc node's swaps: (tick, checkpoint number); tick 14 is in episode 3, 22 in episode
#: 5, 30 in episode 7 (back to ckpt-0001 after the rollback)
SWAPS = [(14, 1), (22, 3), (30, 1)]


def reward_of(episode: int, step: int) -> float:
    return -(10.0 * episode + step)


def error_of(episode: int, step: int) -> float:
    """Only the last step decides success; the steps before and the reset state all fail."""
    return FINAL[episode] if step == STEPS else 1.0 + step / 10


def task_state(stamp_ns: int, error: float) -> bytes:
    types = STORE.types
    sec, nsec = ns_to_sec_nanosec(stamp_ns)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='')
    msg = types[JOINT_STATE](header=header, name=VALVE_NAMES,
                             position=np.array([0.0, 0.0, 0.0, error]),
                             velocity=np.array([], float), effort=np.array([], float))
    return bytes(STORE.serialize_cdr(msg, JOINT_STATE))


def scalar(msgtype: str, value: float) -> bytes:
    return bytes(STORE.serialize_cdr(STORE.types[msgtype](data=value), msgtype))


def diagnostics(stamp_ns: int, name: str, values: dict[str, object]) -> bytes:
    types = STORE.types
    sec, nsec = ns_to_sec_nanosec(stamp_ns)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='')
    status = types['diagnostic_msgs/msg/DiagnosticStatus'](
        level=0, name=name, message='', hardware_id='',
        values=[types['diagnostic_msgs/msg/KeyValue'](key=k, value=str(v))
                for k, v in values.items()])
    return bytes(STORE.serialize_cdr(types[DIAGNOSTICS](header=header, status=[status]),
                                     DIAGNOSTICS))


def write_bag(path: Path, checkpoints: dict[int, str]) -> None:
    """
    The twin's topics as the recorder stores them.

    Tick i happens at T0 + i * PERIOD; episode k resets at tick 4k and steps at 4k+1..4k+4.
    At a reset tick the twin publishes its last state and reward, then ``episode`` and the
    new episode's first state; the recorder's receive order of the three topics rotates
    through three patterns (episode first, last, in between). The recorder joins at tick
    2: the latched ``episode 0`` arrives first, the twin's steps 2-4 of it are recorded.
    """
    with BagWriter(path) as bag:
        def state(t: int, error: float) -> None:
            bag.write('/task_state', JOINT_STATE, task_state(t - 50 * US, error), t)

        def reward(t: int, value: float) -> None:
            bag.write('/reward', FLOAT64, scalar(FLOAT64, value), t)

        bag.write('/episode', INT32, scalar(INT32, 0), T0 + 2 * PERIOD + 50 * US)
        for tick in range(2, 40):
            t = T0 + tick * PERIOD
            episode, step = divmod(tick, STEPS)
            if step == 0:             # reset tick: episode-1's last step, then the reset
                episode, step = episode - 1, STEPS
            if step < STEPS:
                state(t + 100 * US, error_of(episode, step))
                reward(t + 150 * US, reward_of(episode, step))
                continue
            pattern = episode % 3
            order = {0: ('episode', 'state', 'reward', 'init'),
                     1: ('state', 'reward', 'episode', 'init'),
                     2: ('state', 'init', 'reward', 'episode')}[pattern]
            for i, what in enumerate(order):
                at = t + (100 + 50 * i) * US
                if what == 'state':
                    state(at, error_of(episode, STEPS))
                elif what == 'reward':
                    reward(at, reward_of(episode, STEPS))
                elif what == 'episode':
                    bag.write('/episode', INT32, scalar(INT32, episode + 1), at)
                else:
                    state(at, 2.0)    # the new episode's first state
        for i, tick in enumerate(range(2, 40, 5)):   # diagnostics every 0.5 s
            t = T0 + tick * PERIOD + 500 * US
            swaps = sum(1 for at, _ in SWAPS if at <= tick)
            current = checkpoints[SWAPS[swaps - 1][1]] if swaps else '(none)'
            bag.write('/diagnostics', DIAGNOSTICS, diagnostics(t, 'mpc', {
                'rate_hz': 10.0, 'commands': 5 * i, 'checkpoint': current, 'swaps': swaps,
                'refused': 0, 'missed_ticks': i // 2, 'exploring': swaps == 0,
                'plan_ms_p50': 0.0 if swaps == 0 else 10.0 + i,
                'plan_ms_p99': 0.0 if swaps == 0 else 20.0 + i, 'last_error': ''}), t)
            bag.write('/diagnostics', DIAGNOSTICS, diagnostics(t + US, 'safety', {
                'state': 'ARMED', 'passed': 10 * i, 'clamped': 2 * i, 'blocked': 0,
                'held': 1, 'estops': 0, 'rule/step': 2 * i, 'rule/rate': 0,
                'latency_us_p99': 80.0, 'last_reason': 'step: FFJ1'}), t + US)


def make_run(run: Path) -> dict[int, str]:
    """A run folder as `dexmpc up hand_pddm_valve_sim` leaves it; returns the checkpoints."""
    (run / 'logs').mkdir(parents=True)
    spec = {'name': 'valve_test', 'description': 'synthetic', 'robot': 'hand24',
            'backend': 'sim', 'duration_s': 4.0, 'use_sim_time': False, 'source': 'test',
            'nodes': {'twin': {'kind': 'robot', 'parameters': {'task': 'valve',
                                                               'episode_steps': STEPS}},
                      'safety': {'kind': 'safety', 'parameters': {}},
                      'mpc': {'kind': 'mpc', 'parameters': {'explore': True}},
                      'learner': {'kind': 'learner', 'parameters': {}},
                      'recorder': {'kind': 'recorder', 'parameters': {}}}}
    (run / 'spec.yaml').write_text(yaml.safe_dump(spec, sort_keys=False))
    store = CheckpointStore(run / 'models')
    paths = {}
    for number, metrics, baseline in ((1, {'score': 1.0, 'horizon': 7}, None),
                                      (2, {'score': 1.5, 'current_score': 1.2}, 1.2),
                                      (3, {'score': 0.8, 'current_score': 0.9}, 0.9)):
        paths[number] = str(store.next_path())
        store.propose(paths[number], metrics, baseline)
    store.rollback('regressed on the robot')
    (run / 'logs' / 'mpc.log').write_text(''.join(
        f'[INFO] [{(T0 + tick * PERIOD) / 1e9:.9f}] [mpc]: now planning with '
        f'{paths[number]}\n' for tick, number in SWAPS))
    (run / 'logs' / 'twin.log').write_text('[INFO] [1.0] [twin]: ready\n')
    (run / 'logs' / 'safety.log').write_text('[WARN] [1.0] [safety]: clamp: step\n')
    (run / 'logs' / 'learner.log').write_text(
        '[ERROR] [2.0] [learner]: training failed (will retry next time): bag busy\n'
        'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom\n')
    (run / 'logs' / 'recorder.log').write_text('')
    write_bag(run / 'bag', paths)
    return paths


OUTCOME = RunOutcome(exit_code=1, failed_node='learner', reason='node learner died',
                     duration_s=4.0, elapsed_s=4.2, git_commit='a' * 40,
                     node_exit_codes={'twin': 0, 'safety': -2, 'mpc': 0, 'learner': 1,
                                      'recorder': 0})


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> tuple[Path, dict[int, str], Path]:
    folder = tmp_path_factory.mktemp('runs') / 'run'
    paths = make_run(folder)
    html = write_report(folder, OUTCOME)
    return folder, paths, html


# Episodes ----------------------------------------------------------------------------------
def test_episodes_survive_the_receive_order_race_at_resets(run):
    folder, paths, _ = run
    records = run_episodes(folder)
    assert [r.episode for r in records] == list(range(9))    # 9 started, never finished
    assert records[0].partial and not any(r.partial for r in records[1:])
    for r in records[1:]:
        assert r.steps == STEPS
        assert r.episode_return == pytest.approx(sum(reward_of(r.episode, s)
                                                     for s in range(1, STEPS + 1)))
        assert r.final_error == pytest.approx(abs(FINAL[r.episode]))
        assert r.success == (abs(FINAL[r.episode]) < 0.25)
    # recorded rewards: 3 of episode 0 (ticks 2-4), then 4 per episode
    assert [r.env_steps for r in records] == [3 + 4 * k for k in range(9)]
    assert [r.swap for r in records] == [0, 0, 0, 0, 1, 1, 2, 2, 3]
    assert [r.checkpoint for r in records[3:]] == [None] + [paths[1]] * 2 + [paths[3]] * 2 + \
        [paths[1]]


def test_a_task_without_a_success_rule_gets_returns_only(run, tmp_path):
    folder = tmp_path / 'baoding'
    shutil.copytree(run[0], folder)
    spec = yaml.safe_load((folder / 'spec.yaml').read_text())
    spec['nodes']['twin']['parameters']['task'] = 'baoding'
    (folder / 'spec.yaml').write_text(yaml.safe_dump(spec))
    rep = build_report(folder)
    assert rep.rule is None and len(rep.episodes) == 9
    assert all(r.success is None and r.final_error is None for r in rep.episodes)
    assert [g.success_rate for g in rep.groups] == [None] * 4
    write_report(folder)
    md = (folder / 'report' / 'report.md').read_text()
    assert [row[6] for row in table(md, '#')] == ['-'] * 4
    assert 'final |' not in md and "task 'baoding' has no success rule" in md


def test_evaluation_episodes_are_the_planned_multiples_of_eval_every(run, tmp_path):
    folder = tmp_path / 'evaluated'
    shutil.copytree(run[0], folder)
    spec = yaml.safe_load((folder / 'spec.yaml').read_text())
    spec['nodes']['mpc']['parameters']['eval_every'] = 2
    (folder / 'spec.yaml').write_text(yaml.safe_dump(spec))
    records = run_episodes(folder)
    # planned from episode 4 on (the explored episode 2 is not an evaluation)
    assert [r.episode for r in records if r.evaluation] == [4, 6, 8]
    assert not any(r.evaluation for r in run_episodes(run[0]))  # eval_every unset
    write_report(folder)
    md = (folder / 'report' / 'report.md').read_text()
    assert 'evaluation episodes (no action noise): 3, ' in md


def test_a_rule_on_a_missing_entry_is_an_error_naming_it(run):
    with pytest.raises(BagError, match="task_state lacks 'no_such_entry'"):
        run_episodes(run[0], SuccessRule('no_such_entry', 1.0))


def test_groups_per_checkpoint_in_force(run):
    folder, paths, _ = run
    rep = build_report(folder)
    rows = [(g.checkpoint, g.mode, [r.episode for r in g.counted], g.success_rate,
             g.env_steps) for g in rep.groups]
    assert rows == [(None, 'explore', [1, 2, 3], pytest.approx(1 / 3), 15),
                    (paths[1], 'plan', [4, 5], 0.5, 23),
                    (paths[3], 'plan', [6, 7], 1.0, 31),
                    (paths[1], 'plan', [8], 0.0, 35)]
    assert rep.groups[1].mean_return == pytest.approx(np.mean([-170.0, -210.0]))
    assert [s.checkpoint for s in rep.swaps] == [paths[1], paths[3], paths[1]]


def test_checkpoints_accepted_refused_rolled_back(run):
    folder, paths, _ = run
    rep = build_report(folder)
    assert [(e.path, e.accepted, e.rolled_back) for e in rep.checkpoints] == [
        (paths[1], True, False), (paths[2], False, False), (paths[3], True, True)]


# Files -------------------------------------------------------------------------------------
def table(markdown: str, first_header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'| {first_header} |'))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        rows.append([cell.strip() for cell in line.strip('|').split(' | ')])
    return rows


def test_markdown_numbers(run):
    folder, _, _ = run
    md = (folder / 'report' / 'report.md').read_text()
    groups = table(md, '#')
    assert [(row[1], row[2], row[3], row[4], row[6], row[7]) for row in groups] == [
        ('-', 'explore', '0-3', '3', '33%', '15'), ('ckpt-0001', 'plan', '4-5', '2', '50%', '23'),
        ('ckpt-0003', 'plan', '6-7', '2', '100%', '31'), ('ckpt-0001', 'plan', '8-8', '1', '0%',
                                                          '35')]
    assert groups[1][5] == '-190.0'                      # (-170 - 210) / 2
    checkpoints = table(md, 'checkpoint')
    assert [(row[0], row[5], row[6], row[7]) for row in checkpoints] == [
        ('ckpt-0001', 'accepted', '2', '3'), ('ckpt-0002', 'refused', '0', '0'),
        ('ckpt-0003', 'rolled back', '1', '2')]
    assert [row[2] for row in checkpoints] == ['1', '1.5', '0.8']
    assert '- episodes: 8 counted (3 before the first model, 5 planned), 35 env steps' in md
    assert 'git commit: ' + 'a' * 40 in md
    nodes = {row[0]: row for row in table(md, 'node')}
    assert nodes['safety'][2:4] == ['-2 (SIGINT)', 'clean']
    assert nodes['learner'][2:4] == ['1', 'NOT CLEAN']
    assert 'Traceback' in nodes['learner'][4]
    safety = dict(table(md, 'counter'))
    assert safety['clamped'] == '14' and safety['rule/step'] == '14'
    assert 'rule/rate' not in safety                     # rules that never fired are left out
    # the mpc published 8 times (i = 0..7), planning from i = 3 (tick 17, after tick 14)
    assert '- p50 planning time: median 15.00 ms, worst window 17.00 ms' in md
    assert '- p99 planning time: median 25.00 ms, worst window 27.00 ms' in md
    assert '- missed ticks (> 1.5 periods apart): 3 of 35 commands' in md


def test_html_references_every_png_and_nothing_outside(run):
    folder, _, html_path = run
    html = html_path.read_text()
    pngs = sorted(p.name for p in (folder / 'report').glob('*.png'))
    assert pngs == sorted(PLOTS)
    referenced = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(referenced) == pngs
    assert all((folder / 'report' / name).stat().st_size > 5000 for name in pngs)
    assert 'http' not in html.replace('http-equiv', '')    # no network needed to view it
    md = (folder / 'report' / 'report.md').read_text()
    assert sorted(re.findall(r'\]\(([^)]+\.png)\)', md)) == pngs


def test_cli_report_rereads_the_saved_outcome(run, capsys):
    folder, _, html_path = run
    before = (folder / 'report' / 'report.md').read_text()
    assert cli.main(['report', str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f'report: {html_path}'
    assert (folder / 'report' / 'report.md').read_text() == before


# Errors ------------------------------------------------------------------------------------
def test_cli_report_on_a_missing_folder_exits_non_zero_naming_it(tmp_path):
    missing = tmp_path / 'no_run'
    result = subprocess.run([sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'report',
                             str(missing)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f'dexmpc: error: {missing}: no such run folder'


@pytest.mark.parametrize('damaged, content', [
    ('spec.yaml', None),
    ('spec.yaml', 'nodes: [unclosed'),
    ('spec.yaml', 'robot: hand24\n'),
    ('bag/metadata.yaml', 'rosbag2: {'),
    ('models/history.json', '{"version": 1, "ent'),
])
def test_cli_report_on_a_corrupt_folder_exits_non_zero_naming_the_file(
        tmp_path, capsys, damaged, content):
    folder = tmp_path / 'run'
    make_run(folder)
    if content is None:
        (folder / damaged).unlink()
    else:
        (folder / damaged).write_text(content)
    assert cli.main(['report', str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'dexmpc: error: {folder / damaged}: ')
    assert not (folder / 'report').exists()


# End of `dexmpc up` ------------------------------------------------------------------------
class FakeRunner:
    """Stands in for ExperimentRunner: no processes, a chosen result."""

    exit_code = 0

    def __init__(self, experiment, run_dir, domain_id=None, on_status=None) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True)
        self.processes = {n.name: type('Proc', (), {'returncode': 0})()
                          for n in experiment.nodes}

    def run(self, duration, stop):
        return RunResult(self.run_dir, self.exit_code, 'mpc' if self.exit_code else None,
                         'node mpc died' if self.exit_code else '')


@pytest.fixture
def fake_up(monkeypatch):
    """`dexmpc up` without processes; restores the signal handlers cmd_up installs."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(cli, 'ExperimentRunner', FakeRunner)
    calls = []
    yield calls
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_up_reports_without_changing_the_exit_code(fake_up, monkeypatch, tmp_path, capsys):
    def fake_report(run_dir, outcome):
        fake_up.append((run_dir, outcome))
        return run_dir / 'report' / 'report.html'

    monkeypatch.setattr(cli, 'write_report', fake_report)
    monkeypatch.setattr(FakeRunner, 'exit_code', 1)
    out = tmp_path / 'run'
    assert cli.main(['up', 'hand_pddm_valve_sim', '--output', str(out), '--quiet',
                     '--duration', '1']) == 1
    (run_dir, outcome), = fake_up
    assert run_dir == out and outcome.exit_code == 1 and outcome.failed_node == 'mpc'
    assert outcome.node_exit_codes == dict.fromkeys(
        ['twin', 'safety', 'mpc', 'learner', 'recorder'], 0)
    assert outcome.duration_s == 1.0 and not outcome.interrupted
    assert f'report: {out / "report" / "report.html"}' in capsys.readouterr().out
    # no mpc or learner node: no report
    assert cli.main(['up', 'widowx_scripted_sim', '--output', str(tmp_path / 'r2'),
                     '--quiet', '--duration', '1']) == 1
    assert len(fake_up) == 1


@pytest.mark.parametrize('error, shown', [
    (BagError('bag/metadata.yaml: unreadable'), 'report not written: bag/metadata.yaml'),
    (ZeroDivisionError('a bug'), 'ZeroDivisionError: a bug'),
])
def test_a_failing_report_is_printed_not_fatal(fake_up, monkeypatch, tmp_path, capsys, error,
                                               shown):
    def broken(run_dir, outcome):
        raise error

    monkeypatch.setattr(cli, 'write_report', broken)
    out = tmp_path / 'run'
    assert cli.main(['up', 'hand_pddm_valve_sim', '--output', str(out), '--quiet',
                     '--duration', '1']) == 0
    err = capsys.readouterr().err
    assert shown in err and f'(retry: dexmpc report {out})' in err


# Pieces ------------------------------------------------------------------------------------
def test_swaps_from_diagnostics_keep_every_change():
    diag = [(t, {'checkpoint': c}) for t, c in
            enumerate(['(none)', '/m/a', '/m/a', '/m/b', '/m/a'], start=1)]
    assert swaps_from_diagnostics(diag) == [Swap(2, '/m/a'), Swap(4, '/m/b'), Swap(5, '/m/a')]


def test_git_commit_reads_head_refs_and_packed_refs(tmp_path):
    sha1, sha2 = '1' * 40, '2' * 40
    repo = tmp_path / 'repo'
    (repo / '.git' / 'refs' / 'heads').mkdir(parents=True)
    (repo / 'pkg').mkdir()
    (repo / '.git' / 'HEAD').write_text('ref: refs/heads/main\n')
    (repo / '.git' / 'refs' / 'heads' / 'main').write_text(sha1 + '\n')
    assert git_commit(repo / 'pkg') == sha1
    (repo / '.git' / 'refs' / 'heads' / 'main').unlink()
    (repo / '.git' / 'packed-refs').write_text(f'# pack-refs\n{sha2} refs/heads/main\n')
    assert git_commit(repo / 'pkg') == sha2
    (repo / '.git' / 'HEAD').write_text(sha1 + '\n')           # detached
    assert git_commit(repo / 'pkg') == sha1
    (repo / '.git' / 'HEAD').write_text('ref: refs/heads/gone\n')  # unborn branch
    assert git_commit(repo / 'pkg') is None
