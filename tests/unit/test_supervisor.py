"""Supervision: a crashing component is logged and restarted; the others keep running; stop is clean."""

from __future__ import annotations

import logging
import threading

from app.supervisor import Supervisor


def test_crashed_component_restarts_and_others_keep_running(caplog) -> None:
    calls = {"flaky": 0, "steady": 0}
    restarted = threading.Event()

    def flaky(stop: threading.Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("boom")
        restarted.set()
        stop.wait()

    def steady(stop: threading.Event) -> None:
        calls["steady"] += 1
        stop.wait()

    events = []
    sup = Supervisor(on_event=lambda kind, msg: events.append((kind, msg)))
    sup.add("flaky", flaky)
    sup.add("steady", steady)
    with caplog.at_level(logging.ERROR, logger="app.supervisor"):
        sup.start()
        assert restarted.wait(timeout=30), "flaky component was not restarted"
    status = sup.status()
    assert status["flaky"] == {"state": "running", "restarts": 1, "last_error": "RuntimeError: boom"}
    assert status["steady"]["restarts"] == 0 and calls["steady"] == 1
    assert events == [("component_crashed", "flaky: RuntimeError: boom")]
    assert "component flaky crashed; restarting" in caplog.text
    sup.stop_event.set()
    assert sup.join(timeout_s=10) == []
    assert {s["state"] for s in sup.status().values()} == {"stopped"}


def test_component_returning_early_counts_as_a_crash() -> None:
    done = threading.Event()
    runs = []

    def quits(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) == 2:
            done.set()
            stop.wait()

    sup = Supervisor()
    sup.add("quits", quits)
    sup.start()
    assert done.wait(timeout=30)
    assert sup.status()["quits"]["last_error"] == "returned before the app stopped"
    sup.stop_event.set()
    assert sup.join(timeout_s=10) == []


def test_stuck_component_is_reported_on_join(caplog) -> None:
    release, entered = threading.Event(), threading.Event()

    def stuck(stop: threading.Event) -> None:
        entered.set()
        release.wait()

    sup = Supervisor()
    sup.add("stuck", stuck)
    sup.start()
    assert entered.wait(timeout=30)  # a stop set before the thread runs would (rightly) skip the component
    sup.stop_event.set()
    with caplog.at_level(logging.ERROR):
        assert sup.join(timeout_s=0.2) == ["stuck"]
    assert "component stuck did not stop within 0s" in caplog.text
    release.set()
