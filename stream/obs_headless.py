"""OBS Studio headless: its own Xvfb display and an isolated config folder, set up for a 24/7 broadcast.

`HeadlessObs` writes the files OBS 29 reads at start (websocket on with a password, first-run wizard off,
preview off, Advanced output with x264 strict CBR and 2 s keyframes, a custom RTMP service), starts Xvfb
and `obs`, and waits until the websocket port listens. It is for a box without a desktop and for the tests;
a streamer's own OBS needs none of it. Driving OBS (scenes, outputs) lives in `stream.obs`.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from stream.errors import StreamError
from stream.local_server import free_port

__all__ = ["HeadlessObs", "obs_config_files"]

log = logging.getLogger(__name__)

PROFILE = "DreamStream"


def obs_config_files(*, websocket_port: int, password: str, recordings_dir: Path, width: int = 1280,
                     height: int = 720, fps: int = 30, bitrate_kbps: int = 3500, keyframe_interval_s: int = 2,
                     preset: str = "veryfast", audio_bitrate_kbps: int = 128, stream_server: str = "",
                     stream_key: str = "", scene_collection: str = "DreamStream") -> dict[str, str]:
    """Return {path under $XDG_CONFIG_HOME/obs-studio: text} for an OBS 29 that streams the way Twitch asks.

    Args:
        stream_server: rtmp(s):// URL of the ingest without the key ('' leaves the service unset).
        keyframe_interval_s: whole seconds; Twitch requires 2 (Simple output mode would give x264's ~8 s).
    """
    global_ini = f"""\
[General]
FirstRun=true
EnableAutoUpdates=false
WarnBeforeStartingStream=false
WarnBeforeStoppingStream=false
WarnBeforeStoppingRecord=false
ConfirmOnExit=false

[BasicWindow]
PreviewEnabled=false
SysTrayEnabled=false

[Basic]
Profile={PROFILE}
ProfileDir={PROFILE}
SceneCollection={scene_collection}
SceneCollectionFile={scene_collection}

[OBSWebSocket]
FirstLoad=false
ServerEnabled=true
ServerPort={websocket_port}
AlertsEnabled=false
AuthRequired={"true" if password else "false"}
ServerPassword={password}
"""
    basic_ini = f"""\
[General]
Name={PROFILE}

[Video]
BaseCX={width}
BaseCY={height}
OutputCX={width}
OutputCY={height}
FPSType=0
FPSCommon={fps}

[Audio]
SampleRate=44100
ChannelSetup=Stereo

[Output]
Mode=Advanced

[AdvOut]
Encoder=obs_x264
TrackIndex=1
RecType=Standard
RecFilePath={recordings_dir}
RecFormat=flv
RecEncoder=none
RecTracks=1
Track1Bitrate={audio_bitrate_kbps}
"""
    encoder = {"bitrate": bitrate_kbps, "keyint_sec": keyframe_interval_s, "preset": preset, "profile": "main",
               "rate_control": "CBR", "tune": ""}
    files = {"global.ini": global_ini, f"basic/profiles/{PROFILE}/basic.ini": basic_ini,
             f"basic/profiles/{PROFILE}/streamEncoder.json": json.dumps(encoder)}
    if stream_server:
        service = {"type": "rtmp_custom", "settings": {"server": stream_server, "key": stream_key,
                                                       "bwtest": False, "use_auth": False}}
        files[f"basic/profiles/{PROFILE}/service.json"] = json.dumps(service)
    return files


class HeadlessObs:
    """`obs` on its own Xvfb display with its own XDG_CONFIG_HOME; `start()`, `stop()`, `kill()`, restartable.

    The scene collection is kept across restarts (OBS saves it after every change, so even a crash keeps
    it); the other files are rewritten at every start. The password and stream key are written to OBS's
    own files (mode 0600), and nowhere else.
    """

    def __init__(self, directory: Path, *, password: str, port: int = 0, stream_server: str = "",
                 stream_key: str = "", scene_collection: str = "DreamStream", width: int = 1280, height: int = 720,
                 fps: int = 30, bitrate_kbps: int = 3500, preset: str = "veryfast", obs: str = "obs",
                 xvfb: str = "Xvfb") -> None:
        if any(c in value for value in (password, stream_key, stream_server) for c in "\r\n"):
            raise ValueError("the OBS password, stream key and server must be single lines (they go into ini files)")
        self.directory = Path(directory)
        self.port = port or free_port()
        self.recordings_dir = self.directory / "recordings"
        self.log_path = self.directory / "obs.out"
        self._files = dict(websocket_port=self.port, password=password, recordings_dir=self.recordings_dir,
                           width=width, height=height, fps=fps, bitrate_kbps=bitrate_kbps, preset=preset,
                           stream_server=stream_server, stream_key=stream_key, scene_collection=scene_collection)
        self._binaries = {}
        for name, binary in (("obs", obs), ("Xvfb", xvfb)):
            found = shutil.which(binary)
            if found is None:
                raise StreamError(f"{binary!r} not found on PATH; OBS mode headless needs it: "
                                  "`apt-get install obs-studio xvfb` (or `make setup`)")
            self._binaries[name] = found
        self.display = ""
        self._xvfb: subprocess.Popen | None = None
        self._obs: subprocess.Popen | None = None

    @property
    def config_home(self) -> Path:
        """The XDG_CONFIG_HOME that OBS runs with (its files are under `obs-studio/`)."""
        return self.directory / "config"

    @property
    def pid(self) -> int | None:
        return self._obs.pid if self.is_running() else None

    def is_running(self) -> bool:
        return self._obs is not None and self._obs.poll() is None

    def write_config(self) -> None:
        """Write the OBS config files (websocket, output, service) under `config_home`."""
        root = self.config_home / "obs-studio"
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        for rel, text in obs_config_files(**self._files).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            # These files hold the websocket password and stream key: owner-only from the first byte.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        os.chmod(self.config_home, 0o700)

    def start(self, timeout_s: float = 30.0) -> HeadlessObs:
        """Start Xvfb (once) and OBS, and wait until OBS's websocket port accepts connections."""
        if self.is_running():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        if self._xvfb is None or self._xvfb.poll() is not None:
            self._start_xvfb(timeout_s)
        env = {**os.environ, "XDG_CONFIG_HOME": str(self.config_home), "DISPLAY": self.display,
               "QT_QPA_PLATFORM": "xcb"}
        argv = [self._binaries["obs"], "--disable-shutdown-check", "--disable-updater", "--multi"]
        log.debug("starting %s on display %s", argv, self.display)
        with self.log_path.open("ab") as out:
            self._obs = subprocess.Popen(argv, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._obs.poll() is not None:
                code = self._obs.returncode
                self.stop()
                raise StreamError(f"obs exited at start with code {code}; see {self.log_path} and "
                                  f"{self.config_home / 'obs-studio/logs'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("OBS headless on display %s, websocket port %d", self.display, self.port)
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise StreamError(f"OBS did not open its websocket port {self.port} within {timeout_s:.0f}s; see "
                          f"{self.log_path}")

    def _start_xvfb(self, timeout_s: float) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._xvfb = subprocess.Popen(
                [self._binaries["Xvfb"], "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten",
                 "tcp"], pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            os.close(write_fd)
            write_fd = -1
            number = b""
            deadline = time.monotonic() + timeout_s
            # Xvfb writes the display number and a newline once it accepts clients (EOF if it dies).
            while not number.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                # an Xvfb that hangs before reporting would block a bare read (and the app's start) for good
                if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                    break
                chunk = os.read(read_fd, 16)
                if not chunk:
                    break
                number += chunk
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        if not number.strip().isdigit():
            self._stop_xvfb()
            raise StreamError(f"Xvfb did not start (no display number reported within {timeout_s:.0f} s); try "
                              "`Xvfb -displayfd 1` by hand")
        self.display = f":{number.decode().strip()}"

    def kill(self) -> None:
        """Kill OBS at once, as a crash would (Xvfb keeps running, so `start()` brings OBS back)."""
        if self._obs is not None and self._obs.poll() is None:
            self._obs.kill()
            self._obs.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Quit OBS cleanly, kill it if it is still there after `timeout_s`; then end Xvfb."""
        proc, self._obs = self._obs, None
        if proc is not None and proc.poll() is None:
            # OBS 29.0.2 quits cleanly on SIGINT (outputs stopped, files closed, exit code 0 in ~1.2 s), whereas
            # SIGTERM ends it on the spot (no SIGTERM handler): a recording would lose its end.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("OBS did not quit %.0fs after SIGINT; killing it", timeout_s)
                proc.kill()
                proc.wait(timeout=10)
        self._stop_xvfb()

    def _stop_xvfb(self) -> None:
        proc, self._xvfb = self._xvfb, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> HeadlessObs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
