"""OBS mode: drive a streamer's running OBS Studio over obs-websocket v5 (obsws-python).

`ObsController` keeps a small scene collection in OBS (a "Live" scene whose game source plays our local
stream, HUD text sources, and "Starting", "BRB" and "Rollback" cards), switches scenes on app events,
starts and stops OBS's stream and recording, and reads OBS's stats as plain data. Every request has a
timeout; when OBS is gone a call raises one clear `StreamError` and the next call reconnects with backoff,
then restores the scenes, HUD and outputs. Launching OBS on a headless box is `stream.obs_headless`;
the ffmpeg path (`stream.broadcaster`) stays the default and needs none of this.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Interval

from stream.errors import StreamError

__all__ = ["SCENE_KEYS", "STATS_KEYS", "ObsConfig", "ObsController", "ObsRequestError", "PlannedSource",
           "obs_color", "scene_plan"]

log = logging.getLogger(__name__)

SCENE_KEYS = ("live", "starting", "brb", "rollback")
"""The app events `ObsController.show` understands, one scene each."""
STATS_KEYS = ("connected", "error", "scene", "active_fps", "cpu_percent", "memory_mb", "average_render_ms",
              "render_skipped_frames", "render_total_frames", "output_skipped_frames", "output_total_frames",
              "stream_active", "stream_reconnecting", "stream_bytes", "stream_duration_s", "stream_congestion",
              "stream_skipped_frames", "stream_total_frames", "record_active", "record_bytes", "record_duration_s")
"""Keys of `ObsController.stats()`, present whether or not OBS answers."""
TEXT_KINDS = ("text_ft2_source_v2", "text_gdiplus_v3", "text_gdiplus_v2")
"""Text input kinds by preference: FreeType (Linux, macOS), then GDI+ (Windows)."""
GAME_KIND, COLOR_KIND = "ffmpeg_source", "color_source_v3"
SETUP_ATTEMPTS = 3
"""Times the scene set-up starts over after the connection was lost under it, before it gives up."""
# obs-websocket 5 request status codes (RequestStatus enum) the controller treats as expected answers.
OUTPUT_RUNNING, OUTPUT_NOT_RUNNING, RESOURCE_NOT_FOUND = 500, 501, 600
HUD_MARGIN_PX = 24
MASK = "***"


@dataclass(frozen=True, kw_only=True)
class ObsConfig:
    enabled: bool = False
    """Drive a running OBS Studio over its WebSocket server (OBS mode); off: the ffmpeg path broadcasts."""
    host: str = "127.0.0.1"
    """Host of OBS's WebSocket server (Tools > WebSocket Server Settings)."""
    port: Annotated[int, Interval(ge=1, le=65535)] = 4455
    """Port of OBS's WebSocket server (4455 is OBS's default)."""
    password: str = field(default="", repr=False, metadata={"secret_env": "OBS_WEBSOCKET_PASSWORD"})
    """WebSocket server password. Secret: read from the environment, never logged or written to the run dir."""
    request_timeout_s: Annotated[float, Interval(gt=0, le=60)] = 5.0
    """Longest wait for OBS to answer one request (or a connection attempt) before giving up on it."""
    reconnect_interval_s: Annotated[float, Interval(gt=0, le=600)] = 2.0
    """First wait before reconnecting to an OBS that went away; doubles after each failed attempt."""
    reconnect_backoff_max_s: Annotated[float, Interval(gt=0, le=3600)] = 30.0
    """Upper bound of the wait between reconnection attempts."""
    resume_outputs: bool = True
    """After OBS comes back, restart the stream and recording if DreamStream had started them."""
    scene_collection: str = "DreamStream"
    """OBS scene collection holding the scenes below, created if missing ('' uses the current collection)."""
    live_scene: str = "Live"
    """Scene shown while the agent plays: the game source plus the HUD text sources."""
    starting_scene: str = "Starting"
    """Scene shown before the first frame (colour card with a big text)."""
    brb_scene: str = "BRB"
    """Scene shown while the stream pauses (e.g. the trainer restarts)."""
    rollback_scene: str = "Rollback"
    """Scene shown while the agent is rolled back to a checkpoint."""
    game_url: str = ""
    """What the game source plays: the app's local nginx-rtmp URL (filled in by the app when empty), any
    URL ffmpeg reads, or a local file path such as the HLS playlist."""
    game_source: str = "DreamStream game"
    """Name of the game source (an OBS Media Source) in the Live scene."""
    hud_prefix: str = "HUD "
    """HUD item `key` is the text source named prefix + key in the Live scene."""
    font_face: str = "DejaVu Sans"
    """Font of the HUD and card texts (any font installed where OBS runs)."""
    hud_font_size: Annotated[int, Interval(ge=8, le=256)] = 32
    """HUD text size in points."""
    title_font_size: Annotated[int, Interval(ge=8, le=512)] = 96
    """Size of the big text on the Starting, BRB and Rollback cards."""
    background_color: str = "#1d2230"
    """Colour of the Starting, BRB and Rollback cards, as #RRGGBB."""
    starting_text: str = "Starting soon"
    """Big text of the Starting card."""
    brb_text: str = "Be right back"
    """Big text of the BRB card."""
    rollback_text: str = "Rolling back to a checkpoint"
    """Big text of the Rollback card."""
    stream_server: str = ""
    """rtmp(s):// ingest URL without the key that OBS streams to ('' keeps the service set up in OBS)."""
    stream_key: str = field(default="", repr=False, metadata={"secret_env": "TWITCH_STREAM_KEY"})
    """Stream key sent with stream_server. Secret: read from the environment, never logged."""

    def __post_init__(self) -> None:
        scenes = [self.live_scene, self.starting_scene, self.brb_scene, self.rollback_scene]
        if not all(s.strip() for s in scenes) or len(set(scenes)) != len(scenes):
            raise ValueError(f"obs scene names = {scenes}: must be non-empty and different from each other")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.background_color):
            raise ValueError(f"obs.background_color = {self.background_color!r}: must be #RRGGBB, e.g. '#1d2230'")
        if self.stream_server and not self.stream_server.startswith(("rtmp://", "rtmps://")):
            raise ValueError(f"obs.stream_server = {self.stream_server!r}: must be an rtmp:// or rtmps:// URL "
                             "(or '' to keep OBS's own service settings)")
        if not self.game_source.strip() or not self.hud_prefix:
            raise ValueError("obs.game_source and obs.hud_prefix must not be empty")

    @property
    def scenes(self) -> dict[str, str]:
        """Return {app event: OBS scene name}."""
        return {"live": self.live_scene, "starting": self.starting_scene, "brb": self.brb_scene,
                "rollback": self.rollback_scene}


class ObsRequestError(StreamError):
    """OBS answered a request with a failure status (`code` is obs-websocket's RequestStatus)."""

    def __init__(self, request_type: str, code: int, comment: str) -> None:
        self.request_type, self.code = request_type, code
        super().__init__(f"OBS refused {request_type} (code {code}{': ' + comment if comment else ''})")


# ---------------------------------------------------------------------------------------------------------
# What the scenes hold (pure: tested without OBS)


@dataclass(frozen=True)
class PlannedSource:
    """One input DreamStream keeps in a scene: its kind, settings at creation, and placement."""

    name: str
    kind: str
    settings: dict[str, Any]
    transform: dict[str, Any] = field(default_factory=dict)
    at_bottom: bool = False
    """Keep it under everything else in its scene (backgrounds and the game picture)."""


def obs_color(hex_rgb: str, alpha: int = 255) -> int:
    """Return OBS's colour integer (0xAABBGGRR) for '#RRGGBB'."""
    r, g, b = (int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5))
    return alpha << 24 | b << 16 | g << 8 | r


def text_settings(kind: str, text: str, face: str, size: int) -> dict[str, Any]:
    """Return settings for a white, outlined text source of `kind` (FreeType and GDI+ name them differently)."""
    font = {"face": face, "size": size, "style": "Regular", "flags": 0}
    white = obs_color("#ffffff")
    if kind.startswith("text_ft2"):
        return {"text": text, "font": font, "color1": white, "color2": white, "outline": True}
    return {"text": text, "font": font, "color": white, "outline": True, "outline_size": 4,
            "outline_color": obs_color("#000000")}


def game_source_settings(url: str) -> dict[str, Any]:
    """Return Media Source settings that play `url` (a network URL, or a local file such as a playlist)."""
    # Keep the last picture while the local stream reconnects (a black frame on air looks broken), and keep
    # the source open while another scene is shown so switching back to Live is instant.
    common = {"restart_on_activate": False, "close_when_inactive": False, "clear_on_media_end": False,
              "hw_decode": False}
    if "://" in url:
        return {"is_local_file": False, "input": url, "input_format": "", "reconnect_delay_sec": 2,
                "buffering_mb": 1, **common}
    return {"is_local_file": True, "local_file": url, "looping": False, **common}


def hud_transform(index: int, size: int) -> dict[str, Any]:
    """Return the placement of the index-th HUD line: a column at the top left."""
    return {"positionX": HUD_MARGIN_PX, "positionY": HUD_MARGIN_PX + index * round(size * 1.6), "alignment": 5}


def scene_plan(cfg: ObsConfig, width: int, height: int, text_kind: str) -> dict[str, list[PlannedSource]]:
    """Return {scene name: its sources, bottom first} for a canvas of width x height pixels."""
    fill = {"positionX": 0, "positionY": 0, "alignment": 5, "boundsType": "OBS_BOUNDS_SCALE_INNER",
            "boundsWidth": width, "boundsHeight": height, "boundsAlignment": 0}
    centre = {"positionX": width / 2, "positionY": height / 2, "alignment": 0}
    plan = {cfg.live_scene: [PlannedSource(cfg.game_source, GAME_KIND, game_source_settings(cfg.game_url), fill,
                                           at_bottom=True)]}
    for scene, text in ((cfg.starting_scene, cfg.starting_text), (cfg.brb_scene, cfg.brb_text),
                        (cfg.rollback_scene, cfg.rollback_text)):
        background = {"color": obs_color(cfg.background_color), "width": width, "height": height}
        plan[scene] = [PlannedSource(f"{scene} background", COLOR_KIND, background, at_bottom=True),
                       PlannedSource(f"{scene} text", text_kind,
                                     text_settings(text_kind, text, cfg.font_face, cfg.title_font_size), centre)]
    return plan


# ---------------------------------------------------------------------------------------------------------
# Secrets and obsws-python's logging


class _Redactor(logging.Filter):
    """Masks known secrets in obsws-python's records: it logs the password at INFO and request data at DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: let logging report it, it holds no formatted secret
            return True
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_REDACTOR = _Redactor()
OBSWS_LOGGERS = ("obsws_python.baseclient.ObsClient", "obsws_python.reqs.ReqClient")


def _guard_obsws_logs(*secrets: str) -> None:
    _REDACTOR.secrets.update(s for s in secrets if s)
    for name in OBSWS_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


@contextlib.contextmanager
def _quiet_obsws() -> Iterator[None]:
    """Silence obsws-python while connecting: each failed attempt would log a full traceback."""
    logger = logging.getLogger("obsws_python")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Lost(Exception):
    """The websocket failed under a request (closed, reset, timed out): the connection is unusable."""

    def __init__(self, reason: str, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class _Reconnected(Exception):
    """The connection was lost and made again under a scene set-up step: what it had read of OBS may be stale, and
    the step may have been carried out before its answer was lost (sent again, OBS would answer 601 "already
    exists", or add a second scene item). The set-up starts over from what OBS has now."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------
# The controller


class ObsController:
    """A robust handle on one OBS: scenes, HUD, outputs and stats; reconnects with backoff when OBS restarts.

    Calls are thread-safe and take a few ms; while OBS is unreachable they raise `StreamError` at once
    (or after `request_timeout_s` if OBS hangs), and the first call after the backoff reconnects. What the
    app asked for (scene shown, HUD texts, stream and recording on) is remembered and re-applied after a
    reconnect. Call it from a worker thread, never from the actor loop.
    """

    def __init__(self, cfg: ObsConfig) -> None:
        if not cfg.game_url:
            raise ValueError("obs.game_url is empty: set it to the URL OBS should play (the app fills in its local "
                             "RTMP server's URL)")
        self.cfg = cfg
        self.where = f"{cfg.host}:{cfg.port}"
        _guard_obsws_logs(cfg.password, cfg.stream_key)
        self._lock = threading.RLock()
        self._client: Any = None
        self._closed = False
        self._was_connected = False
        self._restoring = False
        self._backoff_s = cfg.reconnect_interval_s
        self._next_attempt_at = 0.0
        self._last_error = ""
        self._down_since: float | None = None
        self._text_kind_cached = ""
        # What the app asked for, re-applied after a reconnect.
        self._ensured = False
        self._setting_up = 0  # depth of ensure_scenes calls in progress (see _Reconnected)
        self._scene = ""
        self._hud: dict[str, str] = {}
        self._sent_hud: dict[str, str] = {}
        self._want_stream = self._want_record = False

    def __repr__(self) -> str:
        return f"ObsController({self.where}, connected={self.is_connected})"

    # -- connection -------------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._client is not None

    def connect(self) -> ObsController:
        """Connect now (ignoring the backoff) and check OBS answers; raise StreamError saying what to fix."""
        with self._lock:
            if self._client is None:
                self._next_attempt_at = 0.0
                self._ensure_connected()
            self._request("GetVersion")
        return self

    def close(self) -> None:
        """Disconnect; OBS itself, its scenes and its outputs are left as they are."""
        with self._lock:
            self._closed = True
            self._disconnect()

    def _open(self) -> Any:
        """Return a connected, identified obsws-python client, or raise StreamError naming the cause."""
        from obsws_python.baseclient import ObsClient
        from obsws_python.error import OBSSDKError

        cfg = self.cfg
        client = None
        with _quiet_obsws():
            try:
                client = ObsClient(host=cfg.host, port=cfg.port, password=cfg.password, timeout=cfg.request_timeout_s)
                client.authenticate()
                return client
            except OBSSDKError as exc:
                self._close_client(client)
                self._last_error = f"refused: {exc}"
                raise StreamError(f"OBS at {self.where} refused the login ({exc}): set OBS_WEBSOCKET_PASSWORD to "
                                  "the password in OBS's Tools > WebSocket Server Settings") from None
            except Exception as exc:  # refused, reset, timed out, not a websocket: all mean "not reachable"
                self._close_client(client)
                self._last_error = _reason(exc)
                raise StreamError(f"OBS at {self.where} is not reachable ({_reason(exc)}); is OBS running with "
                                  "its WebSocket server enabled (Tools > WebSocket Server Settings)?") from None

    @staticmethod
    def _close_client(client: Any) -> None:
        ws = getattr(client, "ws", None)
        if ws is not None:
            try:
                ws.close(timeout=0.5)
            except Exception as exc:  # the socket is being thrown away either way
                log.debug("closing the OBS websocket: %s", _reason(exc))

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._close_client(client)

    def _drop(self, reason: str) -> None:
        """Forget a broken connection; log once when OBS goes away."""
        self._disconnect()
        self._last_error = reason
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("lost OBS at %s (%s); reconnecting with backoff", self.where, reason)

    def _ensure_connected(self) -> None:
        if self._closed:
            raise StreamError("the OBS controller is closed")
        if self._client is not None:
            return
        now = time.monotonic()
        if now < self._next_attempt_at:
            raise StreamError(f"OBS at {self.where} is not reachable ({self._last_error}); next connection attempt "
                              f"in {self._next_attempt_at - now:.0f}s")
        try:
            self._client = self._open()
        except StreamError as exc:
            self._next_attempt_at = now + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self.cfg.reconnect_backoff_max_s)
            if self._down_since is None:
                self._down_since = now
                log.warning("%s; retrying with backoff", exc)
            else:
                log.debug("OBS still not reachable: %s", exc)
            raise
        self._backoff_s = self.cfg.reconnect_interval_s
        self._text_kind_cached = ""
        if self._down_since is not None and self._was_connected:
            log.info("reconnected to OBS at %s after %.0fs", self.where, now - self._down_since)
        else:
            log.info("connected to OBS at %s", self.where)
        self._down_since = None
        if self._was_connected and not self._restoring:
            self._restore()
        self._was_connected = True
        if self._client is None:
            raise StreamError(f"OBS at {self.where} went away again right after reconnecting ({self._last_error})")

    def _restore(self) -> None:
        """Re-apply what the app asked for to an OBS that restarted (its outputs are off, its HUD stale)."""
        self._restoring = True
        self._sent_hud.clear()
        setting_up, self._setting_up = self._setting_up, 0  # the restored show/HUD/outputs may be sent again
        try:
            steps = [("scenes", self.ensure_scenes if self._ensured else None),
                     ("scene", (lambda: self.show(self._scene)) if self._scene else None),
                     ("HUD", (lambda: self.set_hud(dict(self._hud))) if self._hud else None),
                     ("stream", self.start_stream if self._want_stream and self.cfg.resume_outputs else None),
                     ("recording", self.start_record if self._want_record and self.cfg.resume_outputs else None)]
            for what, step in steps:
                if step is None:
                    continue
                try:
                    step()
                except StreamError as exc:
                    log.warning("could not restore the %s after reconnecting to OBS: %s", what, exc)
                    if self._client is None:
                        return
        finally:
            self._restoring = False
            self._setting_up = setting_up

    # -- requests ---------------------------------------------------------------------------------------------

    def _send(self, request_type: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
        from obsws_python.error import OBSSDKTimeoutError

        try:
            response = self._client.req(request_type, dict(data) if data else None)
        except Exception as exc:  # any transport failure leaves the socket unusable
            raise _Lost(_reason(exc), isinstance(exc, OBSSDKTimeoutError | TimeoutError)) from None
        if response.get("requestType") != request_type:
            # A late answer to a request that timed out: the stream of answers is out of step.
            raise _Lost(f"answer to {response.get('requestType')} arrived for {request_type}", False)
        status = response["requestStatus"]
        if not status["result"]:
            raise ObsRequestError(request_type, status["code"], status.get("comment", ""))
        return response.get("responseData") or {}

    def _request(self, request_type: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one request with a timeout; raise StreamError (never hang) when OBS is gone or hangs."""
        with self._lock:
            self._ensure_connected()
            try:
                return self._send(request_type, data)
            except _Lost as lost:
                if lost.timed_out:
                    raise self._lost(request_type, lost) from None
                self._drop(str(lost))
            # Closed under us (OBS quit or restarted): reconnect at once, it may be back already.
            self._next_attempt_at = 0.0
            self._ensure_connected()
            if self._setting_up:
                raise _Reconnected(request_type)
            try:
                return self._send(request_type, data)
            except _Lost as lost:
                raise self._lost(request_type, lost) from None

    def _lost(self, request_type: str, lost: _Lost) -> StreamError:
        """Drop the connection and return the error to raise; after a timeout, wait for the backoff to retry."""
        self._drop(str(lost))
        if lost.timed_out:
            self._next_attempt_at = time.monotonic() + self._backoff_s
            return StreamError(f"OBS at {self.where} did not answer {request_type} within "
                               f"{self.cfg.request_timeout_s:g}s; will reconnect")
        return StreamError(f"OBS at {self.where} closed the connection during {request_type} ({lost})")

    def _text_kind(self) -> str:
        if not self._text_kind_cached:
            kinds = self._request("GetInputKindList", {"unversioned": False})["inputKinds"]
            found = [k for k in TEXT_KINDS if k in kinds]
            if not found or GAME_KIND not in kinds:
                raise StreamError(f"OBS at {self.where} lacks a text ({', '.join(TEXT_KINDS)}) or media "
                                  f"({GAME_KIND}) source kind; it offers {sorted(kinds)}")
            self._text_kind_cached = found[0]
        return self._text_kind_cached

    # -- scenes -----------------------------------------------------------------------------------------------

    def ensure_scenes(self) -> list[str]:
        """Create whatever is missing of the collection, scenes and sources; return what was created or changed.

        Existing scenes and sources are left as the streamer arranged them; only the game source's URL is
        brought in line with the config. Running it again changes nothing and returns [].
        """
        with self._lock:
            for _ in range(SETUP_ATTEMPTS):
                self._setting_up += 1
                try:
                    return self._ensure_scenes_once()
                except _Reconnected as lost:
                    log.info("OBS: the connection was lost and made again during %s; setting up the scenes again "
                             "from what OBS has now", lost)
                finally:
                    self._setting_up -= 1
            raise StreamError(f"OBS at {self.where} dropped the connection {SETUP_ATTEMPTS} times while the scenes "
                              f"were set up; see OBS's log")

    def _ensure_scenes_once(self) -> list[str]:
        with self._lock:
            cfg, created = self.cfg, []
            if cfg.scene_collection:
                created += self._ensure_collection(cfg.scene_collection)
            video = self._request("GetVideoSettings")
            plan = scene_plan(cfg, video["baseWidth"], video["baseHeight"], self._text_kind())
            scenes = {s["sceneName"] for s in self._request("GetSceneList")["scenes"]}
            inputs = {i["inputName"]: i["inputKind"] for i in self._request("GetInputList")["inputs"]}
            for scene, sources in plan.items():
                items: set[str] = set()
                if scene in scenes:
                    listed = self._request("GetSceneItemList", {"sceneName": scene})["sceneItems"]
                    items = {item["sourceName"] for item in listed}
                else:
                    self._request("CreateScene", {"sceneName": scene})
                    created.append(f"scene {scene!r}")
                for source in sources:
                    created += self._ensure_source(scene, source, inputs, items)
            created += self._ensure_game_url()
            self._ensured = True
            if created:
                log.info("OBS: created or updated %s", ", ".join(created))
            return created

    def _ensure_collection(self, name: str) -> list[str]:
        collections = self._request("GetSceneCollectionList")
        if collections["currentSceneCollectionName"] == name:
            return []
        if name in collections["sceneCollections"]:
            self._request("SetCurrentSceneCollection", {"sceneCollectionName": name})
            log.info("OBS: switched to scene collection %r", name)
            return []
        self._request("CreateSceneCollection", {"sceneCollectionName": name})
        return [f"scene collection {name!r}"]

    def _ensure_source(self, scene: str, source: PlannedSource, inputs: dict[str, str], items: set[str]) -> list[str]:
        kind = inputs.get(source.name)
        if kind is not None and kind != source.kind:
            raise StreamError(f"OBS already has a source {source.name!r} of kind {kind!r} where DreamStream "
                              f"expects {source.kind!r}; rename that source in OBS")
        if kind is None:
            item_id = self._request("CreateInput", {"sceneName": scene, "inputName": source.name,
                                                    "inputKind": source.kind, "inputSettings": source.settings,
                                                    "sceneItemEnabled": True})["sceneItemId"]
            inputs[source.name] = source.kind
        elif source.name not in items:
            item_id = self._request("CreateSceneItem", {"sceneName": scene, "sourceName": source.name,
                                                        "sceneItemEnabled": True})["sceneItemId"]
        else:
            return []
        if source.transform:
            self._request("SetSceneItemTransform", {"sceneName": scene, "sceneItemId": item_id,
                                                    "sceneItemTransform": source.transform})
        if source.at_bottom:
            self._request("SetSceneItemIndex", {"sceneName": scene, "sceneItemId": item_id, "sceneItemIndex": 0})
        return [f"{scene}/{source.name}"]

    def _ensure_game_url(self) -> list[str]:
        wanted = game_source_settings(self.cfg.game_url)
        current = self._request("GetInputSettings", {"inputName": self.cfg.game_source})["inputSettings"]
        keys = ("is_local_file", "input", "local_file")
        if all(current.get(k) == wanted.get(k) for k in keys if k in wanted):
            return []
        self._request("SetInputSettings", {"inputName": self.cfg.game_source, "inputSettings": wanted,
                                           "overlay": True})
        return [f"{self.cfg.game_source} playing {self.cfg.game_url}"]

    def _scene_name(self, scene: str) -> str:
        names = self.cfg.scenes
        if scene not in names:
            raise ValueError(f"unknown scene {scene!r}: must be one of {', '.join(SCENE_KEYS)}")
        return names[scene]

    def show(self, scene: str) -> None:
        """Switch OBS's program to the scene of an app event: 'live', 'starting', 'brb' or 'rollback'."""
        name = self._scene_name(scene)
        with self._lock:
            self._scene = scene
            try:
                self._request("SetCurrentProgramScene", {"sceneName": name})
            except ObsRequestError as exc:
                if exc.code != RESOURCE_NOT_FOUND:
                    raise
                log.warning("OBS has no scene %r (removed?); recreating the DreamStream scenes", name)
                self.ensure_scenes()
                self._request("SetCurrentProgramScene", {"sceneName": name})
            log.debug("OBS shows %r", name)

    def set_hud(self, items: Mapping[str, str]) -> None:
        """Set HUD texts {key: text} (text sources in the Live scene, created when missing); unchanged ones are
        not sent again."""
        for key, text in items.items():
            if not isinstance(key, str) or not key or not isinstance(text, str):
                raise ValueError(f"HUD items must be non-empty str keys with str texts, got {key!r}: {text!r}")
        with self._lock:
            self._hud.update(items)
            for key, text in items.items():
                if self._sent_hud.get(key) == text:
                    continue
                name = self.cfg.hud_prefix + key
                try:
                    self._request("SetInputSettings", {"inputName": name, "inputSettings": {"text": text},
                                                       "overlay": True})
                except ObsRequestError as exc:
                    if exc.code != RESOURCE_NOT_FOUND:
                        raise
                    self._create_hud(name, text)
                self._sent_hud[key] = text

    def _create_hud(self, name: str, text: str) -> None:
        scene = self.cfg.live_scene
        try:
            listed = self._request("GetSceneItemList", {"sceneName": scene})["sceneItems"]
        except ObsRequestError as exc:
            if exc.code != RESOURCE_NOT_FOUND:
                raise
            self.ensure_scenes()
            listed = self._request("GetSceneItemList", {"sceneName": scene})["sceneItems"]
        index = sum(item["sourceName"].startswith(self.cfg.hud_prefix) for item in listed)
        kind = self._text_kind()
        settings = text_settings(kind, text, self.cfg.font_face, self.cfg.hud_font_size)
        item_id = self._request("CreateInput", {"sceneName": scene, "inputName": name, "inputKind": kind,
                                                "inputSettings": settings, "sceneItemEnabled": True})["sceneItemId"]
        self._request("SetSceneItemTransform", {"sceneName": scene, "sceneItemId": item_id,
                                                "sceneItemTransform": hud_transform(index, self.cfg.hud_font_size)})
        log.info("OBS: created HUD text source %r", name)

    def screenshot(self, source: str, path: Path, width: int = 640, height: int = 360) -> Path:
        """Save a PNG of a source or scene (an app event name such as 'live' works too) scaled to fit
        width x height; return its path."""
        name = self.cfg.scenes.get(source, source)
        path = Path(path).resolve()
        self._request("SaveSourceScreenshot", {"sourceName": name, "imageFormat": "png", "imageFilePath": str(path),
                                               "imageWidth": width, "imageHeight": height,
                                               "imageCompressionQuality": -1})
        return path

    # -- outputs ----------------------------------------------------------------------------------------------

    def start_stream(self) -> None:
        """Start OBS's stream (to stream_server when set, else to the service set up in OBS); no-op if live."""
        with self._lock:
            self._want_stream = True
            if self.cfg.stream_server:
                settings = {"server": self.cfg.stream_server, "key": self.cfg.stream_key, "use_auth": False,
                            "bwtest": False}
                try:
                    self._request("SetStreamServiceSettings", {"streamServiceType": "rtmp_custom",
                                                               "streamServiceSettings": settings})
                except ObsRequestError as exc:
                    if exc.code == OUTPUT_RUNNING:  # OBS keeps its service while live: already streaming
                        return
                    raise
            if self._start_output("StartStream"):
                log.info("OBS stream started")

    def stop_stream(self) -> None:
        with self._lock:
            self._want_stream = False
            if self._stop_output("StopStream") is not None:
                log.info("OBS stream stopped")

    def start_record(self) -> None:
        """Start OBS's recording (to the folder and format of OBS's output settings); no-op if recording."""
        with self._lock:
            self._want_record = True
            if self._start_output("StartRecord"):
                log.info("OBS recording started")

    def stop_record(self, timeout_s: float = 10.0) -> Path | None:
        """Stop recording; return the finished file (None if nothing was recording)."""
        with self._lock:
            self._want_record = False
            data = self._stop_output("StopRecord")
            if data is None:
                return None
            # OBS answers before its muxer has closed the file: wait for the output to end.
            deadline = time.monotonic() + timeout_s
            while self._request("GetRecordStatus")["outputActive"] and time.monotonic() < deadline:
                time.sleep(0.05)
            path = data.get("outputPath")
            log.info("OBS recording stopped: %s", path)
            return Path(path) if path else None

    def _start_output(self, request_type: str) -> bool:
        try:
            self._request(request_type)
            return True
        except ObsRequestError as exc:
            if exc.code == OUTPUT_RUNNING:
                return False
            raise

    def _stop_output(self, request_type: str) -> dict[str, Any] | None:
        try:
            return self._request(request_type)
        except ObsRequestError as exc:
            if exc.code == OUTPUT_NOT_RUNNING:
                return None
            raise

    # -- stats ------------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return OBS's figures as plain data for the dashboard (all STATS_KEYS; None where unknown).

        Never raises: when OBS is unreachable, `connected` is False and `error` says why (this call also
        reconnects when the backoff allows, so polling it keeps the controller connected).
        """
        out: dict[str, Any] = dict.fromkeys(STATS_KEYS)
        try:
            with self._lock:
                s = self._request("GetStats")
                stream = self._request("GetStreamStatus")
                record = self._request("GetRecordStatus")
                scene = self._request("GetCurrentProgramScene")["currentProgramSceneName"]
        except StreamError as exc:
            out.update(connected=False, error=str(exc))
            return out
        out.update(
            connected=True, error="", scene=scene, active_fps=round(s["activeFps"], 2),
            cpu_percent=round(s["cpuUsage"], 1), memory_mb=round(s["memoryUsage"], 1),
            average_render_ms=round(s["averageFrameRenderTime"], 2), render_skipped_frames=s["renderSkippedFrames"],
            render_total_frames=s["renderTotalFrames"], output_skipped_frames=s["outputSkippedFrames"],
            output_total_frames=s["outputTotalFrames"], stream_active=stream["outputActive"],
            stream_reconnecting=stream["outputReconnecting"], stream_bytes=stream["outputBytes"],
            stream_duration_s=stream["outputDuration"] / 1000, stream_congestion=stream["outputCongestion"],
            stream_skipped_frames=stream["outputSkippedFrames"], stream_total_frames=stream["outputTotalFrames"],
            record_active=record["outputActive"], record_bytes=record["outputBytes"],
            record_duration_s=record["outputDuration"] / 1000)
        return out
