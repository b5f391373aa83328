"""Flights: one fetch per key, when it started, and a background hand-off attached once."""

from __future__ import annotations

import asyncio

from proxy.flight import Flights, Tasks


async def test_start_time_is_the_leaders_and_waiters_join() -> None:
    flights: Flights[int] = Flights(Tasks())
    gate = asyncio.Event()

    async def fetch() -> int:
        await gate.wait()
        return 7

    future, leader = flights.start("k", fetch, now=100.0)
    joined, second = flights.start("k", fetch, now=105.0)
    assert leader and not second and joined is future and flights.coalesced == 1
    assert flights.started_at("k") == 100.0  # a waiter measures its budget from the leader's start
    gate.set()
    assert await future == 7
    await asyncio.sleep(0)
    assert "k" not in flights and flights.started_at("k") is None


async def test_a_mark_is_true_once_per_flight_and_label() -> None:
    flights: Flights[int] = Flights(Tasks())
    gate = asyncio.Event()

    async def fetch() -> int:
        await gate.wait()
        return 1

    future, _ = flights.start("k", fetch, now=0.0)
    other: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    assert not flights.mark("k", other, "refresh")  # not this key's flight
    assert flights.mark("k", future, "refresh")
    assert not flights.mark("k", future, "refresh")
    assert flights.mark("k", future, "slow")  # another label, its own once
    gate.set()
    await future
    await asyncio.sleep(0)
    again, leader = flights.start("k", fetch, now=1.0)  # a new flight starts unmarked
    assert leader and flights.mark("k", again, "refresh")
    await again


async def test_flights_are_bounded_apart_from_the_background_budget() -> None:
    tasks = Tasks(limit=1)
    gate = asyncio.Event()
    assert tasks.spawn(gate.wait(), "refresh") is not None  # the background budget is spent
    assert tasks.spawn(gate.wait(), "another") is None and tasks.dropped == 1
    flights: Flights[int] = Flights(tasks, max_flights=2)

    async def fetch() -> int:
        await gate.wait()
        return 5

    first, _ = flights.start("a", fetch)
    second, _ = flights.start("b", fetch)  # a miss still gets its flight
    third, leader = flights.start("c", fetch)  # beyond max_flights: the caller fetches itself
    assert leader and third.cancelled() and "c" not in flights
    assert not first.done() and not second.done() and tasks.dropped == 2  # one task, one flight
    gate.set()
    assert await first == 5 and await second == 5


async def test_a_full_task_set_leaves_no_trace() -> None:
    flights: Flights[int] = Flights(Tasks(), max_flights=0)

    async def fetch() -> int:
        return 1

    future, leader = flights.start("k", fetch, now=3.0)
    assert leader and future.cancelled()
    assert "k" not in flights and flights.started_at("k") is None


async def test_a_flight_led_inline_is_joined_and_ended_once() -> None:
    flights: Flights[int] = Flights(Tasks())
    assert flights.join("k") is None and flights.coalesced == 0
    assert flights.lead("k", now=4.0)
    joined = flights.join("k")  # a request for the same key meanwhile
    assert joined is not None and flights.coalesced == 1 and flights.started_at("k") == 4.0
    assert flights.join("k") is joined  # every waiter shares the one future
    flights.end("k", 9, None)
    assert await joined == 9
    assert "k" not in flights and flights.join("k") is None  # the next request leads anew
    assert flights.lead("k")
    flights.end("k", 10, None)  # nobody joined this one: nothing to resolve, the key is free
    flights.end("k", 11, None)  # ending twice changes nothing
    assert "k" not in flights and joined.result() == 9 and flights.coalesced == 2


async def test_a_leader_that_fails_hands_its_waiters_the_error() -> None:
    flights: Flights[int] = Flights(Tasks())
    assert flights.lead("k")
    waiter = flights.join("k")
    flights.end("k", None, RuntimeError("vendor exploded"))
    assert waiter is not None and isinstance(waiter.exception(), RuntimeError)
    assert "k" not in flights
    full: Flights[int] = Flights(Tasks(), max_flights=0)
    assert not full.lead("k") and "k" not in full  # the caller fetches uncoalesced
    assert full.open("k").cancelled() and "k" not in full  # as for a flight run as a task
