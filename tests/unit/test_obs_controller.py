"""ObsController's connection logic against a scripted stand-in for obsws-python's client (no OBS, no sockets):
backoff, fast failures, reconnect-and-restore, timeouts, request errors, masked secrets."""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest
from obsws_python.error import OBSSDKTimeoutError

import stream.obs
from stream import StreamError
from stream.obs import STATS_KEYS, ObsConfig, ObsController, ObsRequestError

URL = "rtmp://127.0.0.1:1935/live/dreamstream"


class FakeObs:
    """Answers requests the way obsws-python's ObsClient.req does; records them; can be made to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.fail_with: BaseException | None = None
        self.ws = None

    def req(self, req_type: str, req_data: dict | None = None) -> dict:
        self.sent.append((req_type, req_data))
        if self.fail_with is not None:
            raise self.fail_with
        if req_type == "SaveSourceScreenshot":
            return {"requestType": req_type, "requestStatus": {"result": False, "code": 600,
                                                               "comment": "No source was found by the name of `x`."}}
        data = {"GetStats": {"activeFps": 30.0, "cpuUsage": 12.5, "memoryUsage": 300.0, "averageFrameRenderTime": 4.0,
                             "renderSkippedFrames": 0, "renderTotalFrames": 90, "outputSkippedFrames": 0,
                             "outputTotalFrames": 90},
                "GetStreamStatus": {"outputActive": True, "outputReconnecting": False, "outputBytes": 1000,
                                    "outputDuration": 3000, "outputCongestion": 0.0, "outputSkippedFrames": 0,
                                    "outputTotalFrames": 90},
                "GetRecordStatus": {"outputActive": False, "outputBytes": 0, "outputDuration": 0},
                "GetCurrentProgramScene": {"currentProgramSceneName": "BRB"}}.get(req_type)
        return {"requestType": req_type, "requestStatus": {"result": True, "code": 100}, "responseData": data}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(stream.obs, "time", types.SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


def controller(monkeypatch, clients: list[Any], **cfg: Any) -> tuple[ObsController, list[int]]:
    """Return a controller whose connection attempts take the next item of `clients` (an exception is raised)."""
    ctl = ObsController(ObsConfig(game_url=URL, password="ws-PaSsWoRd", **cfg))
    opened = [0]

    def open_next() -> Any:
        opened[0] += 1
        item = clients.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(ctl, "_open", open_next)
    return ctl, opened


def refused() -> StreamError:
    return StreamError("OBS at 127.0.0.1:4455 is not reachable (connection refused); is OBS running ...")


def test_game_url_is_required() -> None:
    with pytest.raises(ValueError) as err:
        ObsController(ObsConfig())
    assert str(err.value) == ("obs.game_url is empty: set it to the URL OBS should play (the app fills in its local "
                              "RTMP server's URL)")


def test_unreachable_obs_fails_at_once_and_retries_with_capped_backoff(monkeypatch, clock, caplog) -> None:
    ctl, opened = controller(monkeypatch, [refused() for _ in range(5)], reconnect_interval_s=2,
                             reconnect_backoff_max_s=5)
    waits = []
    for _ in range(4):
        with pytest.raises(StreamError, match="is not reachable"):
            ctl.show("brb")  # a connection attempt
        with pytest.raises(StreamError) as err:
            ctl.set_hud({"step": "1"})  # within the backoff: no attempt, an immediate error
        waits.append(str(err.value).rsplit(" ", 1)[-1])
        clock.now += float(waits[-1].rstrip("s"))
    assert waits == ["2s", "4s", "5s", "5s"]
    assert opened == [4]
    assert [r.levelname for r in caplog.records if r.name == "stream.obs"] == ["WARNING"]  # one line per outage
    stats = ctl.stats()  # the dashboard's poll never raises
    assert tuple(stats) == STATS_KEYS and stats["connected"] is False and "not reachable" in stats["error"]
    assert opened == [5]


def test_a_connection_closed_under_a_call_reconnects_at_once_and_restores(monkeypatch, clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    first, second = FakeObs(), FakeObs()
    ctl, opened = controller(monkeypatch, [first, second])
    ctl.connect()
    ctl.start_stream()
    ctl.show("brb")
    first.fail_with = ConnectionResetError("Connection reset by peer")  # OBS was restarted behind our back
    stats = ctl.stats()
    assert stats["connected"] is True and stats["stream_active"] is True and stats["stream_duration_s"] == 3.0
    assert opened == [2]
    assert ("SetCurrentProgramScene", {"sceneName": "BRB"}) in second.sent and ("StartStream", None) in second.sent
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == \
        ["lost OBS at 127.0.0.1:4455 (ConnectionResetError: Connection reset by peer); reconnecting with backoff"]
    assert "reconnected to OBS at 127.0.0.1:4455 after 0s" in caplog.text


def test_a_hung_request_times_out_and_waits_for_the_backoff(monkeypatch, clock) -> None:
    first = FakeObs()
    ctl, opened = controller(monkeypatch, [first, FakeObs()], request_timeout_s=3)
    ctl.connect()
    first.fail_with = OBSSDKTimeoutError("Timeout while trying to send the request")
    with pytest.raises(StreamError) as err:
        ctl.show("live")
    assert str(err.value) == "OBS at 127.0.0.1:4455 did not answer SetCurrentProgramScene within 3s; will reconnect"
    with pytest.raises(StreamError, match="next connection attempt in 2s"):
        ctl.show("live")
    clock.now += 2
    ctl.show("live")
    assert opened == [2]


def test_request_failures_say_what_obs_answered(monkeypatch, clock, tmp_path) -> None:
    ctl, _ = controller(monkeypatch, [FakeObs()])
    with pytest.raises(ObsRequestError) as err:
        ctl.screenshot("x", tmp_path / "x.png")
    assert err.value.code == 600 and ctl.is_connected  # OBS answered: the connection stays
    assert str(err.value) == "OBS refused SaveSourceScreenshot (code 600: No source was found by the name of `x`.)"


def test_bad_app_input_is_a_value_error(monkeypatch, clock) -> None:
    ctl, opened = controller(monkeypatch, [])
    with pytest.raises(ValueError, match="unknown scene 'pause': must be one of live, starting, brb, rollback"):
        ctl.show("pause")
    with pytest.raises(ValueError, match="HUD items must be non-empty str keys with str texts, got 'step': 3"):
        ctl.set_hud({"step": 3})  # type: ignore[dict-item]
    assert opened == [0]


def test_closed_controller_refuses_calls(monkeypatch, clock) -> None:
    ctl, _ = controller(monkeypatch, [FakeObs()])
    ctl.connect()
    ctl.close()
    with pytest.raises(StreamError, match="the OBS controller is closed"):
        ctl.show("live")


def test_secrets_are_masked_in_obsws_python_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ObsController(ObsConfig(game_url=URL, password="ws-PaSsWoRd", stream_key="live_1_SeCrEt"))
    # What obsws-python 1.8 logs on connect (INFO) and for every request (DEBUG):
    logging.getLogger("obsws_python.baseclient.ObsClient").info(
        "Connecting with parameters: host='{host}' port=4455 password='{password}'".format(
            host="127.0.0.1", password="ws-PaSsWoRd"))
    logging.getLogger("obsws_python.baseclient.ObsClient").debug(
        "Sending request %s", {"requestData": {"streamServiceSettings": {"key": "live_1_SeCrEt"}}})
    assert "ws-PaSsWoRd" not in caplog.text and "SeCrEt" not in caplog.text
    assert "password='***'" in caplog.text and "'key': '***'" in caplog.text


def test_app_obs_mode_shows_a_requested_card_then_goes_back_live(monkeypatch) -> None:
    from app.obs_mode import ObsMode

    mode = ObsMode(ObsConfig(), URL)
    shown: list[str] = []
    mode.controller = types.SimpleNamespace(show=shown.append)  # records the switches only
    mode._shown = "starting"  # as open() left it
    clock = {"t": 100.0}
    monkeypatch.setattr("app.obs_mode.time.monotonic", lambda: clock["t"])
    mode.step_scene(lambda: False)
    mode.step_scene(lambda: True)
    mode.card("rollback", 20.0)  # asked from another thread (the checkpoint job)
    for t in (101.0, 110.0, 119.9):
        clock["t"] = t
        mode.step_scene(lambda: True)
    clock["t"] = 120.1
    mode.step_scene(lambda: True)
    mode.step_scene(lambda: True)
    assert shown == ["live", "rollback", "live"]


def test_app_obs_mode_sets_up_an_obs_that_starts_after_the_app_and_shows_a_scene_it_missed(caplog) -> None:
    from app.obs_mode import ObsMode

    calls: list[str] = []
    up = {"obs": False}

    def call(name: str):
        def do(*args) -> None:
            if not up["obs"]:
                raise StreamError("OBS at 127.0.0.1:4455 is not reachable (connection refused)")
            calls.append(f"{name} {' '.join(map(str, args))}".strip())
        return do

    mode = ObsMode(ObsConfig(), URL)
    mode.controller = types.SimpleNamespace(connect=call("connect"), ensure_scenes=call("ensure_scenes"),
                                            show=call("show"), start_stream=call("start_stream"),
                                            set_hud=call("hud"), stats=dict)
    mode.open()  # OBS is not running yet: logged once, the run goes on
    mode.tick(dict, lambda: True)
    assert calls == [] and caplog.text.count("OBS mode: OBS at") == 1
    up["obs"] = True  # OBS started later
    mode.tick(dict, lambda: True)
    assert calls[:4] == ["connect", "ensure_scenes", "show live", "start_stream"]
    calls.clear()
    up["obs"] = False
    mode.show("brb")  # asked while OBS is away: not shown
    up["obs"] = True
    mode.tick(dict, lambda: True)
    assert calls[0] == "show brb"  # asked again once OBS answers


class SceneState:
    """OBS's scene collection as obs-websocket 5 shows it: creating what exists is error 601, and a source added to
    a scene twice is there twice (OBS allows that)."""

    def __init__(self) -> None:
        self.collection, self.collections = "Untitled", ["Untitled"]
        self.scenes: dict[str, list[str]] = {"Scene": []}
        self.inputs: dict[str, str] = {}
        self.settings: dict[str, dict] = {}

    def answer(self, req_type: str, data: dict | None) -> dict:
        data = data or {}
        reply: Any = {}
        if req_type == "GetSceneCollectionList":
            reply = {"currentSceneCollectionName": self.collection, "sceneCollections": list(self.collections)}
        elif req_type == "CreateSceneCollection":
            self.collections.append(data["sceneCollectionName"])
            self.collection, self.scenes, self.inputs = data["sceneCollectionName"], {"Scene": []}, {}
        elif req_type == "GetVideoSettings":
            reply = {"baseWidth": 1280, "baseHeight": 720}
        elif req_type == "GetInputKindList":
            reply = {"inputKinds": [stream.obs.TEXT_KINDS[0], stream.obs.GAME_KIND, stream.obs.COLOR_KIND]}
        elif req_type == "GetSceneList":
            reply = {"scenes": [{"sceneName": name} for name in self.scenes]}
        elif req_type == "GetInputList":
            reply = {"inputs": [{"inputName": name, "inputKind": kind} for name, kind in self.inputs.items()]}
        elif req_type == "GetSceneItemList":
            reply = {"sceneItems": [{"sourceName": name} for name in self.scenes[data["sceneName"]]]}
        elif req_type in ("CreateScene", "CreateInput"):
            name = data["sceneName"] if req_type == "CreateScene" else data["inputName"]
            if name in self.scenes or name in self.inputs:
                refused = {"result": False, "code": 601, "comment": f"A source already exists by that name: {name}"}
                return {"requestType": req_type, "requestStatus": refused}
            if req_type == "CreateScene":
                self.scenes[name] = []
            else:
                self.inputs[name] = data["inputKind"]
                self.settings[name] = dict(data.get("inputSettings") or {})
                self.scenes[data["sceneName"]].append(name)
                reply = {"sceneItemId": len(self.scenes[data["sceneName"]])}
        elif req_type == "CreateSceneItem":
            self.scenes[data["sceneName"]].append(data["sourceName"])
            reply = {"sceneItemId": len(self.scenes[data["sceneName"]])}
        elif req_type == "GetInputSettings":
            reply = {"inputSettings": self.settings.get(data["inputName"], {})}
        elif req_type == "SetInputSettings":
            self.settings[data["inputName"]].update(data["inputSettings"])
        return {"requestType": req_type, "requestStatus": {"result": True, "code": 100}, "responseData": reply}


class SceneConnection:
    """One websocket to `state`; the answer to the n-th request of a kind is lost after OBS carried it out."""

    def __init__(self, state: SceneState, lose: tuple[str, int] | None = None) -> None:
        self.state, self.lose, self.ws, self.counts = state, lose, None, {}

    def req(self, req_type: str, req_data: dict | None = None) -> dict:
        answer = self.state.answer(req_type, req_data)
        self.counts[req_type] = self.counts.get(req_type, 0) + 1
        if self.lose == (req_type, self.counts[req_type]):
            raise ConnectionResetError("Connection reset by peer")
        return answer


@pytest.mark.parametrize(("lose", "repair"), [(("CreateInput", 2), False), (("CreateScene", 1), False),
                                              (("GetInputList", 1), False), (("CreateSceneItem", 1), True),
                                              (("GetSceneItemList", 2), True), (("CreateScene", 1), True)])
def test_a_connection_lost_under_the_scene_set_up_starts_it_over_without_duplicates(monkeypatch, clock, lose,
                                                                                    repair) -> None:
    """The request whose answer was lost had been carried out: sent again it was refused with 601 "already
    exists" (the set-up failed), or added a second copy of a source to a scene. `repair`: OBS has the collection,
    but the streamer removed the game from the live scene and deleted the BRB scene."""
    state = SceneState()
    connections = [SceneConnection(state, lose), SceneConnection(state)]
    ctl, opened = controller(monkeypatch, [SceneConnection(state), *connections] if repair else connections)
    ctl.connect()
    cfg = ctl.cfg
    if repair:
        ctl.ensure_scenes()
        state.scenes[cfg.live_scene].remove(cfg.game_source)
        del state.scenes[cfg.scenes["brb"]]
        ctl._drop("OBS restarted")
        ctl._next_attempt_at = 0.0
    created = ctl.ensure_scenes()  # after a reconnect, the restore sets the scenes up again first
    assert opened == [3 if repair else 2] and (created or repair)
    plan = stream.obs.scene_plan(cfg, 1280, 720, stream.obs.TEXT_KINDS[0])
    for scene, sources in plan.items():
        assert sorted(state.scenes[scene]) == sorted(source.name for source in sources), scene
    assert ctl.ensure_scenes() == []  # all there, once


def test_a_connection_lost_at_every_try_of_the_scene_set_up_is_a_clear_error(monkeypatch, clock) -> None:
    state = SceneState()
    connections = [SceneConnection(state, ("GetVideoSettings", 1)) for _ in range(4)]
    ctl, opened = controller(monkeypatch, connections)
    ctl.connect()
    with pytest.raises(StreamError, match="dropped the connection 3 times while the scenes were set up"):
        ctl.ensure_scenes()
    assert opened == [4]
