from collector.liveness import Liveness, State


def make(**kw: object) -> Liveness:
    return Liveness(late_after=2, down_after=4, now=0.0, **kw)  # type: ignore[arg-type]


def test_up_late_down_and_back() -> None:
    lv = make()
    assert lv.state is State.UNKNOWN
    t = lv.answered(1.0)
    assert t is not None and (t.old, t.new) == (State.UNKNOWN, State.UP)
    assert lv.missed_heartbeat(2.0, "timeout") is None
    t = lv.missed_heartbeat(3.0, "timeout")
    assert t is not None and t.new is State.LATE
    assert lv.missed_heartbeat(4.0, "timeout") is None
    t = lv.missed_heartbeat(5.0, "timeout")
    assert t is not None and (t.old, t.new) == (State.LATE, State.DOWN)
    assert lv.missed_heartbeat(6.0, "timeout") is None
    t = lv.answered(7.0)
    assert t is not None and (t.old, t.new) == (State.DOWN, State.UP)
    assert lv.last_heartbeat == 7.0


def test_never_answered_stays_unknown() -> None:
    lv = make()
    for i in range(10):
        assert lv.missed_heartbeat(float(i), "connect") is None
    assert lv.state is State.UNKNOWN


def test_seen_before_restart_goes_down() -> None:
    lv = make(last_heartbeat=-100.0)
    transitions = [lv.missed_heartbeat(float(i), "connect") for i in range(4)]
    assert [t.new for t in transitions if t] == [State.LATE, State.DOWN]


def test_gone_is_sticky_until_rediscovered() -> None:
    lv = make()
    lv.answered(1.0)
    t = lv.vanished(2.0, "socket vanished")
    assert t is not None and t.new is State.GONE
    assert lv.missed_heartbeat(3.0, "x") is None
    assert lv.state is State.GONE
    t = lv.reappeared(4.0)
    assert t is not None and t.new is State.UNKNOWN
