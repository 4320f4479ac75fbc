"""
One dexmpc graph per ROS domain: ``dexmpc up`` claims its domain and refuses a held one.

Locks go to a per-test folder (``DEXMPC_DOMAIN_LOCKS``), so these tests never see a
developer's real runs, nor block them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from dexmpc_ros.runtime import domains
from dexmpc_ros.runtime.cli import main
from dexmpc_ros.runtime.domains import DomainBusyError, claim_domain

HOLD = ('import sys, time\n'
        'from dexmpc_ros.runtime.domains import claim_domain\n'
        'claim = claim_domain(int(sys.argv[1]), "runs/other-experiment")\n'
        'print("claimed", flush=True)\n'
        'time.sleep(60)\n')


@pytest.fixture(autouse=True)
def private_locks(tmp_path, monkeypatch):
    monkeypatch.setenv('DEXMPC_DOMAIN_LOCKS', str(tmp_path / 'locks'))


@pytest.fixture
def other_run():
    """Another process holding domain 7, like a running ``dexmpc up``."""
    proc = subprocess.Popen([sys.executable, '-c', HOLD, '7'], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == 'claimed'
    yield proc
    proc.kill()
    proc.wait()


def test_a_held_domain_is_refused_naming_its_holder(other_run):
    with pytest.raises(DomainBusyError) as info:
        claim_domain(7, 'runs/mine')
    message = str(info.value)
    assert 'ROS_DOMAIN_ID 7' in message and '--domain-id auto' in message
    assert f'pid {other_run.pid}: runs/other-experiment' in message
    assert domains.holder(7) == f'pid {other_run.pid}: runs/other-experiment'
    with claim_domain(8, 'runs/mine') as claim:     # its neighbour is free
        assert claim.domain_id == 8


def test_the_lock_dies_with_its_process(other_run):
    other_run.kill()                                 # SIGKILL: no clean-up ran
    other_run.wait()
    assert domains.holder(7) is None
    with claim_domain(7, 'runs/mine') as claim:
        assert claim.domain_id == 7


def test_auto_takes_the_highest_free_domain_and_release_frees_it():
    first = claim_domain(None, 'a')
    second = claim_domain(None, 'b')
    assert (first.domain_id, second.domain_id) == (101, 100)
    assert domains.holder(101) is not None
    first.release()
    assert domains.holder(101) is None
    with claim_domain(None, 'c') as third:
        assert third.domain_id == 101
    second.release()


def test_a_domain_outside_the_safe_range_is_refused():
    with pytest.raises(DomainBusyError, match='outside 0..101'):
        claim_domain(150, 'runs/mine')


def test_dexmpc_up_refuses_a_held_domain_before_starting_anything(other_run, tmp_path, capsys):
    code = main(['up', 'widowx_scripted_sim', '--duration', '1', '--domain-id', '7',
                 '--output', str(tmp_path / 'run')])
    assert code == 2
    err = capsys.readouterr().err
    assert 'ROS_DOMAIN_ID 7 is in use by another dexmpc run' in err, err
    assert not (tmp_path / 'run').exists()


def test_dexmpc_up_refuses_the_inherited_domain_too(other_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', '7')
    assert main(['up', 'widowx_scripted_sim', '--duration', '1',
                 '--output', str(tmp_path / 'run')]) == 2
    assert 'ROS_DOMAIN_ID 7 is in use' in capsys.readouterr().err


def test_reservations_skip_held_and_reserved_domains(other_run):
    first = domains.reserve_free_domain([7, 8, 9], 'pytest a')   # 7 is held by a run
    assert first.domain_id == 8
    second = domains.reserve_free_domain([7, 8, 9], 'pytest b')  # 8 is reserved
    assert second.domain_id == 9
    with claim_domain(8, 'runs/mine') as claim:   # the reserver's own run may use it
        assert claim.domain_id == 8
    with pytest.raises(DomainBusyError, match='no free ROS_DOMAIN_ID'):
        domains.reserve_free_domain([7, 8, 9, 150], 'pytest c')
    first.release()
    with domains.reserve_free_domain([7, 8, 9], 'pytest c') as third:
        assert third.domain_id == 8
    second.release()


def test_the_safety_bench_takes_reserved_in_range_domains_for_any_pid():
    """bench/safety.py used 100 + pid % 80 and counted up: over 101 for most pids."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / 'bench' / 'safety.py'
    spec = importlib.util.spec_from_file_location('bench_safety', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sections = bench.SectionDomains(None)
    seen = [sections.fresh() for _ in range(12)]
    assert len(set(seen)) == 12 and all(1 <= d <= 101 for d in seen)
    assert domains.holder(seen[-1]) is None          # a reservation does not block dexmpc up
    with pytest.raises(DomainBusyError):             # ... but does block other reservers
        domains.reserve_free_domain([seen[-1]], 'pytest')
