"""Dashboard app through FastAPI's test client: status JSON, episodes, frame preview, token check."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.dashboard import DashboardServices, create_app
from app.settings import DashboardConfig
from app.storage import add_episode, ensure_run, open_database, upgrade


@pytest.fixture
def services(tmp_path):
    engine, sessions = open_database(tmp_path / "d.db")
    upgrade(engine)
    with sessions.begin() as session:
        run_id = ensure_run(session, "r", "crafter", "random").id
        add_episode(session, run_id, env_id="crafter", score=3.0, length=12, env_step=12)
    frames = {"jpeg": None}
    yield DashboardServices(status=lambda: {"run_name": "r", "counters": {"env_steps": 12}},
                            frame_jpeg=lambda: frames["jpeg"], sessions=sessions, run_id=run_id), frames
    engine.dispose()


def test_status_page_episodes_and_frame(services) -> None:
    svc, frames = services
    client = TestClient(create_app(DashboardConfig(), svc), base_url="http://127.0.0.1")
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "DreamStream" in page.text
    assert client.get("/api/status").json()["counters"]["env_steps"] == 12
    episodes = client.get("/api/episodes").json()
    assert [e["score"] for e in episodes] == [3.0]
    assert episodes[0]["ended_at"].endswith("+00:00")  # with its zone: a browser would read a bare time as local
    assert client.get("/api/frame.jpg").status_code == 404
    frames["jpeg"] = b"\xff\xd8jpeg"
    got = client.get("/api/frame.jpg")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content == b"\xff\xd8jpeg"


def test_token_is_required_when_set(services) -> None:
    svc, _ = services
    client = TestClient(create_app(DashboardConfig(token="s3cret"), svc), base_url="http://127.0.0.1")
    assert client.get("/healthz").status_code == 200  # liveness probes need no token
    assert client.get("/api/status").status_code == 401
    assert client.get("/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = client.get("/?token=s3cret", follow_redirects=False)
    # The cookie, then the page without the token in the address bar (a streamer may show the browser).
    assert page.status_code == 303 and page.headers["location"] == "./"
    assert client.get("/").status_code == 200
    assert client.get("/api/status").status_code == 200  # the cookie set by the page authenticates later calls
    assert client.get("/openapi.json").status_code in (401, 404)  # no API schema for whoever asks


def test_an_old_token_never_replaces_a_good_cookie_and_a_stale_cookie_never_shadows_the_new_token(services) -> None:
    """A stale cookie after a token change made `/?token=NEW` a 401 (the cookie was read first, and JavaScript
    cannot clear an HttpOnly one); an old bookmark's `/?token=OLD` replaced a good cookie with the wrong token."""
    svc, _ = services
    client = TestClient(create_app(DashboardConfig(token="n" * 16), svc), base_url="http://127.0.0.1")
    client.cookies.set("dreamstream_token", "o" * 16)  # from before the token change
    assert client.get("/api/status").status_code == 401
    assert client.get(f"/?token={'n' * 16}").status_code == 200  # the new token wins, and replaces the cookie
    assert client.get("/api/status").status_code == 200
    assert client.get(f"/?token={'o' * 16}").status_code == 200  # an old bookmark, passed on the good cookie
    assert client.get("/api/status").status_code == 200  # the good cookie was kept


def test_wrong_tokens_are_told_in_the_log_but_never_lock_the_operator_out(services, caplog) -> None:
    svc, _ = services
    client = TestClient(create_app(DashboardConfig(token="s3cret"), svc), base_url="http://127.0.0.1")
    for i in range(30):  # a stale tab polling with an old token, or a guesser
        assert client.get("/api/status", headers={"Authorization": f"Bearer old{i}"}).status_code == 401
    assert client.get("/api/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert caplog.text.count("request(s) with a wrong token from") == 1  # once a minute, not 30 lines


def test_a_dashboard_on_the_network_needs_a_long_token() -> None:
    with pytest.raises(ValueError, match="has 6 characters; .* at least 16"):
        DashboardConfig(host="0.0.0.0", token="s3cret")
    DashboardConfig(host="127.0.0.1", token="s3cret")  # on loopback the operator's own choice


def test_loopback_dashboard_refuses_foreign_host_names(services) -> None:
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 must not read the dashboard."""
    svc, _ = services
    app = create_app(DashboardConfig(), svc)
    assert TestClient(app, base_url="http://evil.example:8080").get("/api/status").status_code == 400
    assert TestClient(app, base_url="http://localhost:8080").get("/api/status").status_code == 200
    # Bound beyond loopback, the token guards it and any name (a LAN address, a proxy's) is accepted.
    shared = TestClient(create_app(DashboardConfig(host="0.0.0.0", token="t" * 16), svc), base_url="http://10.0.0.5:8080")
    assert shared.get("/api/status", headers={"Authorization": "Bearer " + "t" * 16}).status_code == 200


def test_local_chat_box_posts_as_the_operator_and_refuses_cross_site_posts(services) -> None:
    from dataclasses import replace

    from app.chat import ChatCore, ChatHub, ChatRules

    svc, _ = services
    steered = []
    hub = ChatHub(ChatCore(ChatRules(user_cooldown_s=0)), on_steer=steered.append)
    client = TestClient(create_app(DashboardConfig(), replace(svc, chat=hub)), base_url="http://127.0.0.1")
    without = TestClient(create_app(DashboardConfig(), svc), base_url="http://127.0.0.1")
    assert without.get("/api/chat").status_code == 404
    got = client.post("/api/chat", json={"text": "!poll 30 Next game? | chess | crafter"})
    assert got.status_code == 200
    assert got.json() == {"replies": ["poll: Next game? 1 = chess, 2 = crafter (!vote N, 30 s)"], "rate_limited": False}
    assert client.post("/api/chat", json={"text": "!dream"}).json() == {"replies": [], "rate_limited": False}
    assert [s.action for s in steered] == ["dream"]
    chat = client.get("/api/chat").json()
    assert [(line["kind"], line["user"]) for line in chat["lines"]] == [
        ("message", "operator"), ("reply", "bot"), ("message", "operator"), ("steer", "")]
    assert chat["poll"]["question"] == "Next game?" and chat["poll"]["votes"] == {"1. chess": 0, "2. crafter": 0}
    assert client.get("/api/chat", params={"after": chat["lines"][-1]["id"]}).json()["lines"] == []
    # What another site's page could send: a plain form post, or a fetch that carries its Origin.
    form = client.post("/api/chat", content=b'{"text": "!endpoll"}', headers={"content-type": "text/plain"})
    foreign = client.post("/api/chat", json={"text": "!endpoll"}, headers={"origin": "http://evil.example"})
    assert form.status_code in (415, 422) and foreign.status_code == 403
    assert client.post("/api/chat", json={"text": ""}).status_code == 422
    assert client.post("/api/chat", json={"text": "x" * 501}).status_code == 422
    assert hub.poll().seconds_left > 0  # neither refused post ended the poll


def test_operator_controls_answer_with_the_outcome_and_refuse_cross_site_posts(services) -> None:
    from dataclasses import replace

    svc, _ = services
    calls = []

    def control(action: str, step: int | None) -> tuple[bool, str]:
        calls.append((action, step))
        return (True, f"{action} done") if action != "rollback" or step != 99 else (False, "there is no checkpoint 99")

    client = TestClient(create_app(DashboardConfig(), replace(svc, control=control)), base_url="http://127.0.0.1")
    without = TestClient(create_app(DashboardConfig(), svc), base_url="http://127.0.0.1")
    assert without.post("/api/control/pause", json={}).status_code == 404  # no controls: no route
    assert client.post("/api/control/pause", json={}).json() == {"ok": True, "message": "pause done"}
    refused = client.post("/api/control/rollback", json={"step": 99})
    assert refused.status_code == 409 and refused.json()["detail"] == "there is no checkpoint 99"
    assert client.post("/api/control/rollback", json={"step": -1}).status_code == 422
    form = client.post("/api/control/rollback", content=b"{}", headers={"content-type": "text/plain"})
    foreign = client.post("/api/control/rollback", json={}, headers={"origin": "http://evil.example"})
    assert form.status_code in (415, 422) and foreign.status_code == 403
    assert calls == [("pause", None), ("rollback", 99)]  # refused posts never reached the app
    tokened = TestClient(create_app(DashboardConfig(token="t"), replace(svc, control=control)),
                         base_url="http://127.0.0.1")
    assert tokened.post("/api/control/pause", json={}).status_code == 401


def test_health_says_what_needs_a_look_with_503(services) -> None:
    from dataclasses import replace

    svc, _ = services
    state = {"run_name": "r", "counters": {}, "stream": {"state": "live", "last_error": ""},
             "components": {"actor": {"state": "running", "restarts": 0, "last_error": ""}},
             "chat": {"twitch": {"connected": True}}, "disk": {"free_gb": 80.0, "low": False}, "metrics": {}}
    client = TestClient(create_app(DashboardConfig(token="s3cret-token-16chars"), replace(svc, status=lambda: state)),
                        base_url="http://127.0.0.1")
    auth = {"Authorization": "Bearer s3cret-token-16chars"}
    assert client.get("/api/health").status_code == 401  # the state of the run is not for anyone
    ok = client.get("/api/health", headers=auth)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "problems": []})
    state["stream"] = {"state": "reconnecting", "last_error": "the ingest failed: Connection refused"}
    state["components"]["twitch-chat"] = {"state": "restarting", "restarts": 3, "last_error": "TwitchError: 401"}
    state["chat"]["twitch"]["connected"] = False
    state["disk"] = {"free_gb": 2.5, "low": True}
    bad = client.get("/api/health", headers=auth)
    assert bad.status_code == 503 and bad.json()["problems"] == [
        "stream reconnecting: the ingest failed: Connection refused",
        "component twitch-chat restarting: TwitchError: 401", "the Twitch chat bot is not connected",
        "disk low: 2.5 GB free"]
    assert client.get("/api/status", headers=auth).json()["problems"] == bad.json()["problems"]  # the page's banner
    assert client.get("/healthz").status_code == 200  # liveness only: the dashboard answers


def test_episodes_page_back_by_id_and_mode_and_the_history_downloads_as_csv(services) -> None:
    import csv
    import io

    svc, _ = services
    with svc.sessions.begin() as session:
        for i in range(30):
            add_episode(session, svc.run_id, env_id="crafter", score=float(i), length=5, env_step=100 + i,
                        mode="eval" if i % 2 else "train")
    client = TestClient(create_app(DashboardConfig(), svc), base_url="http://127.0.0.1")
    first = client.get("/api/episodes?limit=10").json()
    second = client.get(f"/api/episodes?limit=10&before_id={first[-1]['id']}").json()
    assert [e["score"] for e in first + second] == [float(i) for i in range(29, 9, -1)]
    evals = client.get("/api/episodes?limit=500&mode=eval").json()
    assert len(evals) == 15 and {e["mode"] for e in evals} == {"eval"}
    assert client.get("/api/episodes?mode=nonsense").status_code == 422
    got = client.get("/api/history.csv")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert len(rows) == 31 and rows[0]["score"] == "3.0" and rows[-1]["score"] == "29.0"  # the fixture's first
    assert len(list(csv.DictReader(io.StringIO(client.get("/api/history.csv?mode=eval").text)))) == 15
