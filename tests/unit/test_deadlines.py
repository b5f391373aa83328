"""The send deadline of `proxy.deadlines` on a hand-turned timer: it runs between two takes of
the client (nginx's send_timeout), not for a whole answer, and only while writing is paused."""

from __future__ import annotations

from proxy.deadlines import Deadlines
from tests.listener.test_protocol import FakeTimer

SEND = 60.0


class Client:
    """What the deadlines see of a client: the bytes of answers it has not taken yet."""

    def __init__(self, backlog: int) -> None:
        self.left = backlog
        self.expired: list[str] = []

    def backlog(self) -> int:
        return self.left


def stalled(client: Client) -> tuple[FakeTimer, Deadlines]:
    timer = FakeTimer()
    deadlines = Deadlines(timer, client.expired.append, lambda: False, body_timeout=30.0)
    deadlines.stalled(SEND, client.backlog)
    return timer, deadlines


def test_a_client_that_takes_nothing_is_cut_once_at_the_deadline() -> None:
    client = Client(backlog=1_000_000)
    timer, _ = stalled(client)
    timer.advance(SEND - 1)
    assert client.expired == []
    timer.advance(2)
    assert client.expired == ["send"]
    timer.advance(10 * SEND)
    assert client.expired == ["send"]


def test_each_take_moves_the_deadline_on_without_a_resume() -> None:
    """A client that takes a few bytes now and then, never enough for writing to resume."""
    client = Client(backlog=1_000_000)
    timer, _ = stalled(client)
    for _ in range(5):
        timer.advance(SEND - 1)
        client.left -= 100  # it took 100 bytes: the transport is still past its mark
        timer.advance(2)  # the deadline came, saw progress, and moved on
    assert client.expired == []
    timer.advance(SEND + 1)  # then nothing more
    assert client.expired == ["send"]


def test_resumed_writing_disarms_it_and_a_new_pause_starts_afresh() -> None:
    client = Client(backlog=1_000_000)
    timer, deadlines = stalled(client)
    timer.advance(SEND - 1)
    deadlines.flowing()
    timer.advance(2 * SEND)
    assert client.expired == []
    deadlines.stalled(SEND, client.backlog)
    deadlines.stalled(SEND, client.backlog)  # paused again while armed: one deadline, not two
    timer.advance(SEND + 1)
    assert client.expired == ["send"]


def test_stopping_the_timers_disarms_it() -> None:
    client = Client(backlog=1_000_000)
    timer, deadlines = stalled(client)
    deadlines.stop_timer()  # the connection is gone
    timer.advance(2 * SEND)
    assert client.expired == []


def test_a_phase_set_meanwhile_leaves_it_armed() -> None:
    """The answer went out whole and the connection went idle: the idle deadline (armed anew,
    the phase timer having fired) must not take the send deadline with it."""
    client = Client(backlog=1_000_000)
    timer, deadlines = stalled(client)
    deadlines.set("idle", 75.0)
    timer.advance(SEND + 1)
    assert client.expired == ["send"]
