"""Run health (the verdict behind `dexmpc up`'s exit status 3), on status-node events."""

from __future__ import annotations

from dexmpc_ros.runtime.run_health import RunHealth

START = 1_000.0


def events(*items):
    """A status line carrying ``items`` as (t since START, event) pairs."""
    return {'nodes': {}, 'events': [{'t': START + t, **event} for t, event in items]}


def safety(state):
    return {'kind': 'safety', 'state': state}


def error(node, message):
    return {'kind': 'error', 'node': node, 'message': message}


def cleared(node):
    return {'kind': 'cleared', 'node': node, 'level': 'ok', 'message': 'active'}


def health(*lines, safety_nodes=('safety',)):
    judge = RunHealth(START, safety_nodes)
    for line in lines:
        judge.observe(line)
    return judge


def test_a_clean_run_is_healthy():
    judge = health({'nodes': {'twin': {'level': 'ok'}}},
                   events((0.4, safety('DISARMED')), (2.0, safety('ARMED'))))
    verdict = judge.verdict(START + 30)
    assert verdict.healthy and not verdict.notes


def test_ending_estopped_fails_naming_when_and_why():
    judge = health(events((0.4, safety('DISARMED')), (2.0, safety('ARMED'))),
                   events((12.34, safety('ESTOPPED: state_lost: joint_states silent'))),
                   # later lines while still e-stopped change nothing
                   events((13.0, safety('ESTOPPED: estop: e-stop received'))))
    verdict = judge.verdict(START + 30)
    assert verdict.problems == ('safety e-stopped at 12.3 s: state_lost: joint_states silent '
                                '(still e-stopped at the end)',)


def test_an_estop_reset_during_the_run_is_a_note():
    judge = health(events((2.0, safety('ARMED')), (5.0, safety('ESTOPPED: estop: pulled')),
                          (7.5, safety('ARMED'))))
    verdict = judge.verdict(START + 30)
    assert verdict.healthy
    assert verdict.notes == ('safety e-stopped at 5.0 s: estop: pulled (reset at 7.5 s)',)


def test_a_driver_fault_fails_the_run_even_when_recovered():
    judge = health(events((3.0, error('robot', 'FAULT: servo 4 overload; holding'))),
                   events((9.0, cleared('robot'))),
                   events((11.0, error('robot', 'FAULT: servo 5 overheating'))))
    verdict = judge.verdict(START + 30)
    assert verdict.problems == ('robot ERROR at 3.0 s: FAULT: servo 4 overload; holding '
                                '(cleared at 9.0 s) (+1 more)',)


def test_the_supervisor_errors_are_judged_through_its_state_only():
    judge = health(events((5.0, error('guard', 'E-STOPPED (estop: pulled)')),
                          (5.0, safety('ESTOPPED: estop: pulled')),
                          (6.0, cleared('guard')), (6.0, safety('ARMED'))),
                   safety_nodes=('guard',))
    verdict = judge.verdict(START + 30)
    assert verdict.healthy and len(verdict.notes) == 1


def test_what_happens_while_the_run_stops_does_not_count():
    # stopping the controllers first makes a hand driver or the supervisor see silence
    judge = health(events((2.0, safety('ARMED'))),
                   events((30.5, safety('ESTOPPED: state_lost: joint_states silent')),
                          (30.6, error('robot', 'silent controller'))))
    assert judge.verdict(START + 30).healthy


def test_malformed_events_are_skipped():
    judge = health({'nodes': {}, 'events': [{'kind': 'safety'}, {'t': 'x', 'kind': 'error'},
                                            {'t': START + 1, 'kind': 'unknown'}]})
    assert judge.verdict(START + 30).healthy
