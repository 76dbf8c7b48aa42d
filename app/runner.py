"""The orchestrator: wires env, agent, learner, overlay, stream, dashboard, storage and scheduler, and
supervises them.

Frames flow actor -> compositor (overlays.compose) -> Broadcaster.offer -> ffmpeg; experience flows actor
-> replay -> learner; counters flow to the dashboard, the overlay and the metrics store. Every long-running
part is a supervised component, so a crash in one is logged and restarted while the rest goes on.
"""

from __future__ import annotations

import collections
import gc
import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

import envs
from app import __version__
from app.broadcast_state import FrameFeed
from app.chat import ChatCore, ChatHub, Steer
from app.chat.twitch import TwitchChat
from app.config import Config, secret_values
from app.dashboard import DashboardServer, DashboardServices, create_app
from app.errors import RunDirError
from app.evaluation import (
    EVAL_SEED_OFFSET,
    Deadline,
    RollbackRule,
    Score,
    eval_plan,
    first_elo_estimate,
    held_out,
    play_episodes,
    ranking_metric,
    score_of,
    with_opponent,
)
from app.logs import SecretFilter
from app.metrics import MetricsWriter
from app.obs_mode import ObsMode
from app.rating import LADDER, next_opponent, rung_of
from app.rundir import RunDir, atomic_write_text
from app.scheduler import ClockWatch, build_scheduler, declare_jobs, run_jobs_now
from app.storage import add_event, ensure_run, open_database, prune_details, record_episode, upgrade
from app.supervisor import Supervisor
from app.training import Training
from overlays import ChatLine, Layout, Poll, compose, fallback_frame
from stream import Broadcaster, LocalRtmpServer, check_ffmpeg, output_for, prune_recordings
from trainer.errors import TrainerError

__all__ = ["Counters", "Runner"]

log = logging.getLogger(__name__)

STALE_FRAME_S = 10.0
"""A game frame older than this means the actor is restarting: the overlay says so."""
FLASH_S = 20.0
"""How long a one-off notice (a rollback, a pause) stays on the broadcast frame."""
HISTORY_PRUNE_EVERY_S = 3600.0
"""How often the disk job empties old training episodes' details (storage.keep_train_details_days)."""
CONTROLS = ("checkpoint", "rollback", "pause", "resume", "stream_reconnect")
"""What the operator can ask of the running app (the dashboard's buttons)."""


@dataclass
class Counters:
    """Run-wide counters; they continue across sessions through the run dir's state.json."""

    env_step: int = 0
    episodes: int = 0
    updates: int = 0
    sessions: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        values = {}
        for key in ("env_step", "episodes", "updates", "sessions"):
            value = state.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RunDirError(f"state.json: {key} = {value!r} must be a whole number >= 0; fix it, or delete "
                                  "state.json to restart the counters from zero")
            values[key] = value
        return cls(**values)


@dataclass
class Live:
    """What the actor publishes for the overlay and dashboard; replaced as a whole under the lock."""

    frame: np.ndarray | None = None
    frame_at: float = 0.0
    last_action: str = ""
    episode_score: float = 0.0
    episode_length: int = 0
    recent_scores: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=100))



class _EvalTimeout(Exception):
    """An evaluation went past scheduler.eval_timeout_min."""

class Runner:
    """Runs one session of a run: `run()` blocks until stopped and returns the exit status."""

    def __init__(self, cfg: Config, rundir: RunDir, *, mode: Literal["run", "train"] = "run") -> None:
        self.cfg = cfg
        self.rundir = rundir
        self.mode = mode
        self.run_name = cfg.run.name or rundir.root.name
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self._lock = threading.Lock()
        stored = rundir.read_state()
        self.counters = Counters.from_state(stored)
        self.live = Live()
        self._fps = {"env": 0.0, "updates": 0.0}
        """Measured between two status reports (not the learner's own average, which stands still when it does)."""
        self._last_report = (time.monotonic(), self.counters.env_step, self.counters.updates)
        self._started_at = time.monotonic()
        self._session_start_step = self.counters.env_step
        self._composed: np.ndarray | None = None
        self.supervisor = Supervisor(self.stop_event, on_event=self._record_event,
                                     redact=SecretFilter(secret_values(cfg)).mask)
        self.broadcaster: Broadcaster | None = None
        self.local_server: LocalRtmpServer | None = None
        self.obs: ObsMode | None = None
        self.dashboard: DashboardServer | None = None
        self.sessions = None
        self._engine = None
        self.run_id: int | None = None
        self.metrics: MetricsWriter | None = None
        self.training: Training | None = None
        self.feed = FrameFeed(cfg.overlay, run_name=self.run_name, game=cfg.env.id)
        self._load_curves()
        self._curves_saved = -1
        """RunCurves.version last written to metrics/curves.json."""
        self.notice = ""
        self.disk: dict[str, Any] = {}
        """The run dir's disk: free_gb, total_gb, low (below storage.min_free_gb); see check_disk."""
        self._history_pruned_at = -float("inf")
        self._with_stream = mode == "run" and cfg.stream.enabled
        self._with_dashboard = mode == "run" and cfg.dashboard.enabled
        self._chat_events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        """Chat's events for the database, written by the chat loop (never under the hub's lock)."""
        self.chat: ChatHub | None = None
        self.twitch: TwitchChat | None = None
        if mode == "run" and ((cfg.chat.local and self._with_dashboard) or cfg.chat.twitch):
            self.chat = ChatHub(ChatCore(cfg.chat.rules(), stats=self._chat_stats), on_steer=self._steer)
            self.chat.add_announcer("events", lambda text: self._chat_events.put(("chat", text)))  # polls, votes
            if cfg.chat.twitch:
                self.twitch = TwitchChat(cfg.chat, self.chat)
        self._dream_now = threading.Event()
        self._reset_episode = threading.Event()
        self._scheduler = None
        self._checkpoint_lock = threading.Lock()
        """Held while a checkpoint is scored and saved (the job, or the operator's 'checkpoint now')."""
        self._rollback_rule = RollbackRule(cfg.scheduler.rollback_after, cfg.scheduler.rollback_z)
        self._evaluates = cfg.scheduler.eval_episodes > 0 and not envs.spec(cfg.env.id).single_instance
        self._rates = ranking_metric(cfg) == "elo"
        """Chess: evaluations are games against the ladder, and checkpoints are ranked by Elo."""
        self._elo_estimate: float | None = None
        self._auto_rollback_to: int | None = None
        """The checkpoint the last automatic rollback went to: never again to the same one (see checkpoint())."""
        self._restore_rollback_guard(stored.get("rollback"))
        self._state_lock = threading.RLock()
        """Held while state.json is built and written, and while the curriculum changes the opponent."""
        self._curriculum = self._rates and cfg.scheduler.curriculum
        self._stored_curriculum = stored.get("curriculum")
        """What state.json says of the curriculum; written back unchanged while it is not in use."""
        self.training_opponent: str | None = self._restore_opponent(self._stored_curriculum)
        """Chess curriculum: the ladder rung the actor trains against now (None: env.chess.opponent)."""
        self._opponent_changed = threading.Event()
        self._stored_paused = bool(stored.get("paused"))
        """The operator's pause from an earlier session; only a session with a learner and a dashboard (which can
        resume it) changes it, so a failed start, a headless `train` or a random agent keep it for the next."""
        self.last_eval: dict[str, Any] | None = None
        self._flash: tuple[str, float] = ("", 0.0)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            log.info("stopping: %s", reason)
            self.stop_event.set()
            self._dream_now.set()  # the dream loop waits on it

    def run(self, on_tick=None) -> int:
        """Start every component, wait until a stop is requested, shut down cleanly; return 0.

        The stream and dashboard start first, so viewers and the operator see "compiling" while the
        agent is restored and compiled; then the actor and the learner start.
        """
        scheduler = None
        try:
            self._open()
            self._record_event("session_started", f"session {self.counters.sessions}, dreamstream {__version__}")
            self.check_disk()  # before the compile and the first saves, which a full disk would make fail
            self.supervisor.start()
            self.notice = "restoring and compiling the agent..." if self.cfg.trainer.agent != "random" else ""
            self.training.open()
            self.notice = ""
            gc.freeze()  # start-up objects (modules, compiled code) leave the collector's long pauses
            self.supervisor.add("actor", self._act)
            if self.training.is_learning:
                self.supervisor.add("learner", lambda stop: self.training.learn(stop, self._on_train_metrics))
                if self._with_stream:
                    self.supervisor.add("dreamer", self._dream_loop)
            if self.chat is not None:
                self.supervisor.add("chat", self._chat_loop)
            if self.twitch is not None:
                self.supervisor.add("twitch_chat", self.twitch.run, backoff_max_s=120.0)
            self.supervisor.start()
            scheduler = build_scheduler(declare_jobs(self.cfg.run, self.cfg.scheduler, save_state=self.save_state,
                                                     report_status=self.report_status, checkpoint=self.checkpoint,
                                                     prune_disk=self.prune_disk))
            scheduler.start()
            self._scheduler = scheduler
            deadline = self._started_at + self.cfg.run.duration_s if self.cfg.run.duration_s else None
            clock = ClockWatch()
            while not self.stop_event.wait(0.25):
                back = clock.stepped_back()
                if back:
                    log.warning("the wall clock went back %.0f s; running the periodic jobs now (their wall-clock "
                                "schedule would otherwise wait that long)", back)
                    run_jobs_now(scheduler)
                if deadline is not None and time.monotonic() >= deadline:
                    self.request_stop(f"run.duration_s = {self.cfg.run.duration_s:g} reached")
                if self.training.peer_stopped:
                    self.request_stop("another process of this multi-process training stopped")
                if on_tick is not None:
                    on_tick(self)
        finally:
            self.request_stop(self.stop_reason or "shutdown")
            # Each step is guarded: one failing must not leave the others undone (an orphan ffmpeg or nginx,
            # an unsaved checkpoint or counter).
            self._cleanup("scheduler", lambda: scheduler is not None and scheduler.shutdown(wait=True))
            self._cleanup("components", lambda: self.supervisor.join(timeout_s=60.0))  # an update may take s
            self._cleanup("training", lambda: self.training is not None and self.training.close())
            self._cleanup("OBS", lambda: self.obs is not None and self.obs.close())
            self._cleanup("stream", lambda: self.broadcaster is not None and self.broadcaster.close())
            self._cleanup("local RTMP server", lambda: self.local_server is not None and self.local_server.stop())
            self._cleanup("dashboard", lambda: self.dashboard is not None and self.dashboard.close())
            self._cleanup("run state", self.save_state)
            self._cleanup("event log", lambda: self._record_event("session_stopped", self.stop_reason))
            self._cleanup("metrics", lambda: self.metrics is not None and self.metrics.close())
            # Disposing closes the connections, so SQLite folds its WAL back into the file.
            self._cleanup("database", lambda: self._engine is not None and self._engine.dispose())
            self.rundir.dashboard_url_path.unlink(missing_ok=True)
            log.info("session ended at env step %d (%d this session): %s", self.counters.env_step,
                     self.counters.env_step - self._session_start_step, self.stop_reason)
        return 0

    @staticmethod
    def _cleanup(what: str, step: Callable[[], Any]) -> None:
        try:
            step()
        except Exception:
            log.exception("shutdown: closing the %s failed; going on with the rest", what)

    def prune_disk(self) -> None:
        """Scheduler job: keep stream recordings (ours and the local server's) within their size budget, and
        check the free space of the run dir's disk."""
        keep_mb = self.cfg.stream.keep_recordings_mb
        for folder, pattern in ((self.rundir.recordings_dir, "stream-*.flv"), (self.rundir.rtmp_dir / "rec", "*.flv")):
            try:  # (a file ffmpeg or nginx removes meanwhile)
                prune_recordings(folder, keep_mb, pattern=pattern)
            except OSError as exc:
                log.warning("could not prune the recordings in %s: %s", folder, exc)
        self.check_disk()
        if time.monotonic() - self._history_pruned_at >= HISTORY_PRUNE_EVERY_S:
            self._history_pruned_at = time.monotonic()
            self.prune_history()

    def prune_history(self) -> int:
        """Empty the details of training episodes older than storage.keep_train_details_days (in short batches);
        return how many. A failure is logged: the next hour tries again."""
        days = self.cfg.storage.keep_train_details_days
        if not days:
            return 0
        from datetime import UTC, datetime, timedelta

        cutoff, total = datetime.now(UTC) - timedelta(days=days), 0
        try:
            while not self.stop_event.is_set():
                with self.sessions.begin() as session:
                    done = prune_details(session, cutoff, run_id=self.run_id)
                total += done
                if done == 0:
                    break
        except Exception:
            log.exception("could not prune old episode details from the database")
        if total:
            log.info("emptied the details of %d training episodes older than %g days (storage."
                     "keep_train_details_days)", total, days)
        return total

    def check_disk(self) -> dict[str, Any]:
        """Measure the run dir's disk; warn once (log and event) when its free space falls below
        storage.min_free_gb, and say so once it is back above it by a margin (10 %, at least 1 GB: recordings
        and their pruning move it up and down every minute). Returns (and keeps for the status) what it
        measured; a failed measurement is logged once and leaves no figure."""
        try:
            usage = shutil.disk_usage(self.rundir.root)
        except OSError as exc:
            if "error" not in self.disk:
                log.warning("cannot measure the free disk space of %s: %s", self.rundir.root, exc)
            self.disk = {"error": str(exc), "low": self.disk.get("low", False)}
            return self.disk
        free_gb, limit = usage.free / 1e9, self.cfg.storage.min_free_gb
        was_low = self.disk.get("low", False)
        low = free_gb < (limit + max(1.0, 0.1 * limit) if was_low and limit > 0 else limit)
        self.disk = {"free_gb": round(free_gb, 1), "total_gb": round(usage.total / 1e9, 1), "low": low}
        if low and not was_low:
            message = (f"only {free_gb:.1f} GB free on the disk of {self.rundir.root} (storage.min_free_gb = "
                       f"{limit:g}): checkpoints, replay chunks and recordings will soon fail to be written; free "
                       "space, or lower stream.keep_recordings_mb")
            log.warning("%s", message)
            self._record_event("disk_low", message)
        elif was_low and not low:
            message = f"{free_gb:.1f} GB free on the disk of {self.rundir.root} again"
            log.info("%s", message)
            self._record_event("disk_ok", message)
        return self.disk

    def _open(self) -> None:
        """Open storage, the dashboard and the stream, and build (not yet compile) the agent."""
        cfg = self.cfg
        self.counters.sessions += 1
        self._engine, self.sessions = open_database(self.rundir.database_path(cfg.storage.database))
        upgrade(self._engine)
        with self.sessions.begin() as session:
            self.run_id = ensure_run(session, self.rundir.database_run_name(cfg.storage.database), cfg.env.id,
                                     cfg.trainer.agent).id
        self.metrics = MetricsWriter(self.rundir.metrics_dir, tensorboard=cfg.storage.metrics_tensorboard)
        self.metrics.subscribe(self.feed.on_metrics_row)  # the learning curves are drawn from the metrics rows
        probe = envs.make_from_config(cfg.env)  # unknown ids and bad options fail now, not in the actor
        obs_space, action_space = probe.observation_space, probe.action_space
        probe.close()
        if self._with_stream:
            check_ffmpeg(cfg.stream.ffmpeg_path)
        if self._with_dashboard:
            services = DashboardServices(status=self.status, frame_jpeg=self.frame_jpeg, sessions=self.sessions,
                                         run_id=self.run_id,
                                         hls_dir=self.rundir.hls_dir if cfg.stream.enabled and cfg.stream.hls else None,
                                         chat=self.chat if cfg.chat.local else None, control=self.control,
                                         curves=self.feed.curves_data)
            self.dashboard = DashboardServer(create_app(cfg.dashboard, services), cfg.dashboard.host,
                                             cfg.dashboard.port)
            atomic_write_text(self.rundir.dashboard_url_path, self.dashboard.url + "\n")
            self.supervisor.add("dashboard", self.dashboard.serve)
        if self._with_stream:
            url = None
            if cfg.stream.target == "local":
                self.local_server = LocalRtmpServer(
                    self.rundir.rtmp_dir, record_interval_s=round(cfg.stream.segment_minutes * 60)).start()
                url = self.local_server.url()
                log.info("local RTMP server at %s (recordings in %s)", url, self.rundir.rtmp_dir / "rec")
                self.supervisor.add("local RTMP server", self.local_server.keep_running)  # restarted if it dies
            output = output_for(cfg.stream, self.rundir.recordings_dir, self.rundir.hls_dir, url=url)
            self.broadcaster = Broadcaster(cfg.stream, output, recordings_dir=self.rundir.recordings_dir,
                                           hls_dir=self.rundir.hls_dir)
            self.broadcaster.start()
            self.supervisor.add("compositor", self._compose_loop)
            if cfg.obs.enabled:
                self.obs = ObsMode(cfg.obs, self.local_server.url() if self.local_server else "")
                self.obs.open()
                self.supervisor.add("obs", lambda stop: self.obs.run(stop, self._obs_hud, self._is_playing))
        self.training = Training(cfg, obs_space, action_space, run_root=self.rundir.root,
                                 env_steps=lambda: self.counters.env_step)
        if self._stored_paused and self.training.is_learning:
            if self._with_dashboard:  # an operator's pause outlives a restart; the dashboard resumes it
                self.training.learner.paused.set()
                log.warning("learning stays paused, as the operator left it: the agent plays on; resume it on "
                            "the dashboard")
            else:
                log.warning("learning was paused on the dashboard in an earlier session; this session has no "
                            "dashboard to resume it from, so it learns (the next one with a dashboard starts paused)")
        log.info("run %s: %s on %s, session %d, env step %d, logdir %s", self.run_name, self._agent_name(),
                 cfg.env.id, self.counters.sessions, self.counters.env_step, self.rundir.root)

    def _agent_name(self) -> str:
        return "random (baseline)" if self.cfg.trainer.agent == "random" else "DreamerV3"

    # -- actor --------------------------------------------------------------------------------------------

    def _act(self, stop: threading.Event) -> None:
        """Play the env with the agent until `stop`, feeding replay; one env per (re)start of this component."""
        cfg, training = self.cfg, self.training
        self._opponent_changed.clear()  # before reading the opponent: a change from now on is seen at an episode end
        env = envs.make_from_config(self._actor_env_config())
        try:
            cap_s = 1.0 / cfg.run.max_env_fps if (cfg.run.max_env_fps and self.mode == "run") else 0.0
            obs, _ = env.reset(seed=cfg.env.seed + self.counters.episodes)
            state, reward, is_first = None, 0.0, True
            score, length = 0.0, 0
            self._reset_episode.clear()  # a vote that passed while no game was running is stale
            next_t = time.monotonic()
            names = getattr(env.unwrapped, "action_names", None)
            native = cfg.overlay.native_render and self._with_stream
            while not stop.is_set():
                action, state = training.policy(obs, state, is_first)
                training.record(obs, action, reward, is_first=is_first, is_last=False, is_terminal=False,
                                latent=state)
                acted_on, acted_mask = obs["image"], obs.get("action_mask")
                obs, reward, terminated, truncated, info = env.step(action)
                is_first = False
                score += float(reward)
                length += 1
                view = env.render() if native else None
                self.feed.on_step(acted_on, training.stored_action(action), state, info, env, acted_mask)
                with self._lock:
                    self.counters.env_step += 1
                    step = self.counters.env_step
                    self.live.frame = view if view is not None else obs["image"]
                    self.live.frame_at = time.monotonic()
                    self.live.last_action = names[int(action)] if names else str(action)
                    self.live.episode_score, self.live.episode_length = score, length
                reset = self._reset_episode.is_set() and not (terminated or truncated)
                if reset:  # a chat vote ended the game: a truncation, as a time limit would be
                    info = {"episode": {"length": length, "return": score, "result": "reset", "reset_by": "chat"}}
                if terminated or truncated or reset:
                    self._reset_episode.clear()  # the vote ended this game; it must not cut the next one short
                    training.record(obs, None, reward, is_first=False, is_last=True, is_terminal=terminated)
                    self._episode_done(step, info["episode"])
                    if self._opponent_changed.is_set():  # the curriculum moved on: the next game is against it
                        self._opponent_changed.clear()
                        env = self._switch_env(env)
                    obs, _ = env.reset(seed=cfg.env.seed + self.counters.episodes)
                    state, reward, is_first = None, 0.0, True
                    score, length = 0.0, 0
                if cfg.run.steps and step >= cfg.run.steps:
                    self.request_stop(f"run.steps = {cfg.run.steps} reached")
                    break
                period = max(cap_s, training.pace_s())
                if period:
                    next_t += period
                    now = time.monotonic()
                    if next_t < now - 1.0:
                        next_t = now
                    stop.wait(max(0.0, next_t - now))
        finally:
            env.close()

    def _switch_env(self, env: Any) -> Any:
        """The actor's env for the curriculum's new opponent; the old one stays if the new one cannot be made."""
        try:
            new = envs.make_from_config(self._actor_env_config())
        except Exception:
            log.exception("could not make the env for the opponent %s; the actor keeps its current opponent",
                          self.training_opponent)
            return env
        env.close()
        return new

    def _on_train_metrics(self, updates: int, metrics: dict[str, float]) -> None:
        with self._lock:
            self.counters.updates = updates
            step = self.counters.env_step
        assert self.metrics is not None
        self.metrics.write(step, metrics)

    def _dream_loop(self, stop: threading.Event) -> None:
        """Refresh the dream vs reality strips every few seconds, or at once when chat asks (`!dream`); slow
        jitted calls, so never in the compositor."""
        while not stop.is_set():
            self._dream_now.wait(self.cfg.overlay.dream_interval_s)
            self._dream_now.clear()
            if not stop.is_set():
                self.feed.refresh_dream(self.training.agent)

    # -- chat ---------------------------------------------------------------------------------------------

    def _steer(self, steer: Steer) -> None:
        """Carry out what chat decided (called by the chat hub under its lock: only flags, nothing slow)."""
        if steer.action == "dream":
            self._dream_now.set()
        elif steer.action == "reset_episode":
            self._reset_episode.set()
            self._chat_events.put(("chat_reset", steer.reason))
        else:
            log.warning("chat asked for an unknown action %r", steer.action)

    def _chat_loop(self, stop: threading.Event) -> None:
        """Close polls when their time is up, and store chat's events (a supervised component)."""
        assert self.chat is not None
        while not stop.wait(0.5):
            self.chat.tick()
            while True:
                try:
                    kind, message = self._chat_events.get_nowait()
                except queue.Empty:
                    break
                self._record_event(kind, message)

    def _chat_stats(self) -> dict[str, Any]:
        with self._lock:
            c, recent = self.counters, list(self.live.recent_scores)
            return {"game": self.cfg.env.id, "env_steps": c.env_step, "updates": c.updates, "episodes": c.episodes,
                    "mean_score": float(np.mean(recent)) if recent else None,
                    "last_eval": self._eval_text(), "uptime": _duration(time.monotonic() - self._started_at)}

    def _eval_text(self) -> str:
        """The last evaluation in a few words for chat, e.g. 'Elo 812 ± 190 (checkpoint 4,000)'."""
        ev = self.last_eval
        if ev is None:
            return ""
        value = f"Elo {ev['score']:.0f} ± {ev['sem']:.0f}" if ev["kind"] == "Elo" else \
            f"score {ev['score']:.2f} ± {ev['sem']:.2f}"
        return f"{value} (checkpoint {ev['checkpoint']:,})"

    def _chat_status(self) -> dict[str, Any]:
        if self.chat is None:
            return {}
        status = {"local": self.cfg.chat.local, "dropped": self.chat.core.dropped, "errors": self.chat.errors}
        if self.twitch is not None:
            status["twitch"] = self.twitch.stats()
        return status

    def _chat_panels(self) -> tuple[tuple[ChatLine, ...], Poll | None]:
        if self.chat is None:
            return (), None
        return tuple(ChatLine(user=line.user, text=line.text) for line in self.chat.lines()), self.chat.poll()

    # -- checkpoints, evaluation, rollback -----------------------------------------------------------------

    def checkpoint(self) -> None:
        """Scheduler job: snapshot the agent, score it, save it ranked by that score, and roll back to the best
        checkpoint when `scheduler.rollback_after` checkpoints in a row scored clearly below it.

        The score is the mean return of `scheduler.eval_episodes` evaluation episodes played with the
        snapshot's parameters on a second env (training goes on meanwhile), else of the last 100 training
        episodes. A stop during the evaluation abandons it (the shutdown checkpoint follows).
        """
        if not self.training.is_learning or self.training.checkpointer is None:
            return
        if not self._checkpoint_lock.acquire(blocking=False):
            log.info("a checkpoint is being scored and saved already; this one is skipped")
            return
        try:
            snapshot = self.training.snapshot()
            if snapshot[0] == 0 or snapshot[0] == self.training.checkpoint_step:
                return
            if self._evaluates:
                snapshot = self.training.held(snapshot)
                try:
                    score = self._evaluate(*snapshot)
                except Exception as exc:  # a broken eval env or opponent, or a timeout, must not stop checkpoints
                    if isinstance(exc, _EvalTimeout):
                        log.warning("%s", exc)
                        self._record_event("eval_timeout", str(exc))
                    else:
                        log.exception("evaluation of update %d failed; the checkpoint is saved unscored", snapshot[0])
                        self._record_event("eval_failed", f"update {snapshot[0]}: {type(exc).__name__}: {exc}"[:500])
                    self.training.checkpoint(None, snapshot)
                    return
                if score is None:
                    return
            else:
                with self._lock:
                    recent = list(self.live.recent_scores)
                score = Score.of(recent) if recent else None
            # The rung trained against is kept with the checkpoint: a rollback to it goes back to that rung too.
            rung = rung_of(self.training_opponent or self.cfg.env.chess.opponent) if self._curriculum else None
            extra = {"opponent_elo": rung} if rung is not None else None
            if self.training.checkpoint(score, snapshot, extra) is None or score is None:
                return
            if self._curriculum:
                self._advance_opponent(score)
            best = self.training.best()
            roll_back = self._rollback_rule.observe(score, best[1] if best else None)
            self._save_state_quietly()  # the rule's count survives a restart
            if roll_back:
                assert best is not None
                if best[0] == self._auto_rollback_to:
                    # Its descendants never matched its score again: that score was likely luck. Going back
                    # to it once more would loop; keep training and let a better checkpoint take its place.
                    self._record_event("rollback_skipped", f"checkpoint {best[0]} was rolled back to already and "
                                       f"has not been matched since ({best[1]}; the last one scored {score})")
                    return
                self._auto_rollback_to = best[0]
                self._save_state_quietly()
                try:
                    self.rollback(reason=f"{self._rollback_rule.after} checkpoints in a row scored clearly below "
                                         f"the best, checkpoint {best[0]} ({best[1]}); the last one scored {score}")
                except TrainerError as exc:
                    log.error("automatic rollback to checkpoint %d failed: %s; training goes on", best[0], exc)
                    self._record_event("rollback_failed", str(exc))
        finally:
            self._checkpoint_lock.release()

    def _evaluate(self, step: int, state: Any) -> Score | None:
        """Play the evaluation episodes with a snapshot's parameters on fresh envs; store and report them.

        Chess with `scheduler.elo_ladder`: the games are spread over the ladder rungs nearest the agent's last
        rating, and the score is the fitted Elo with its standard error.
        """
        cfg, n = self.cfg, self.cfg.scheduler.eval_episodes
        params = self.training.params_of(state)
        agent = self.training.agent
        t0 = time.monotonic()
        deadline = Deadline(self.stop_event, cfg.scheduler.eval_timeout_min * 60)
        played: list[tuple[dict[str, Any], float | None]] = []  # (episode, the rung's Elo when rating)
        for env_cfg, count, rung in self._eval_plan(n):
            env = envs.make_from_config(env_cfg)
            try:
                episodes = play_episodes(env, lambda obs, st, first: agent.policy(obs, st, first, params=params),
                                         count, seed=cfg.env.seed + EVAL_SEED_OFFSET + len(played),
                                         stop=deadline)
            finally:
                env.close()
            played += [(episode, rung) for episode in episodes]
            if len(episodes) < count:
                if self.stop_event.is_set():
                    log.info("evaluation of update %d stopped after %d of %d episodes", step, len(played), n)
                    return None
                message = (f"the evaluation of update {step} took longer than scheduler.eval_timeout_min = "
                           f"{cfg.scheduler.eval_timeout_min:g} min ({len(played)} of {n} episodes done; an env "
                           "without an episode limit?); the checkpoint is saved unscored")
                raise _EvalTimeout(message)
        seconds = time.monotonic() - t0
        returns = score_of(played, rated=False)
        score = score_of(played, rated=True) if self._rates else returns
        row = {"eval/score": returns.mean, "eval/score_sem": returns.sem}
        if self._rates:
            self._elo_estimate = score.mean
            row.update({"eval/elo": score.mean, "eval/elo_se": score.sem})
            opponent_elo = rung_of(self.training_opponent or cfg.env.chess.opponent)
            if opponent_elo is not None:
                row["train/opponent_elo"] = opponent_elo
        with self._lock:
            env_step = self.counters.env_step
        try:
            with self.sessions.begin() as session:
                for episode, _ in played:
                    record_episode(session, self.run_id, env_id=cfg.env.id, episode=episode, env_step=env_step,
                                   mode="eval", checkpoint=step)
        except Exception:
            log.exception("could not store the evaluation episodes of update %d", step)
        if self.metrics is not None:
            self.metrics.write(env_step, {**row, "eval/episodes": float(n), "eval/seconds": seconds})
        self.last_eval = {"checkpoint": step, "score": round(score.mean, 4), "sem": round(score.sem, 4),
                          "episodes": n, "seconds": round(seconds, 1), "env_step": env_step, "at": time.time(),
                          "kind": "Elo" if self._rates else "mean return"}
        log.info("update %d scored %s%s in evaluation (%.1fs)", step, "Elo " if self._rates else "", score, seconds)
        return score

    def _actor_env_config(self) -> Any:
        """The env the actor trains on: the config's, against the curriculum's current opponent."""
        env = self.cfg.env
        if self.training_opponent is None:
            return env
        return with_opponent(env, self.training_opponent)

    def _restore_rollback_guard(self, stored: Any) -> None:
        """Take back the rollback rule's count and the last automatic rollback's target from state.json: a run
        that restarts (a crash, a deploy, a restart loop) must not roll back to the same lucky checkpoint again
        and again, nor forget the clearly worse checkpoints it has seen."""
        if stored is None:
            return
        worse, target = (stored.get("worse_in_a_row"), stored.get("auto_rollback_to")) if isinstance(stored, dict) \
            else (None, None)
        valid = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0
        if not valid(worse) or not (target is None or valid(target)):
            log.warning("state.json: rollback = %r is not {worse_in_a_row, auto_rollback_to}; the rollback rule "
                        "starts afresh", stored)
            return
        self._rollback_rule.worse_in_a_row, self._auto_rollback_to = worse, target

    def _restore_opponent(self, stored: Any) -> str | None:
        """The rung a resumed curriculum had reached, if it started from the opponent configured now."""
        if not self._curriculum or stored is None:
            return None
        configured = self.cfg.env.chess.opponent
        if not isinstance(stored, dict) or rung_of(str(stored.get("opponent", ""))) is None:
            log.warning("state.json: curriculum = %r is not a ladder rung; training starts against %s",
                        stored, configured)
            return None
        if stored.get("from") != configured:
            log.warning("the curriculum had reached %s from %s, but env.chess.opponent is now %s: training "
                        "starts against %s", stored["opponent"], stored.get("from"), configured, configured)
            return None
        log.info("curriculum: training goes on against %s (reached from %s)", stored["opponent"], configured)
        return stored["opponent"]

    def _advance_opponent(self, score: Score) -> None:
        """Chess curriculum: move the actor on to the next ladder rung once it beats its opponent (75 %), or back
        one rung (not below the configured opponent) once it scores under 25 % against it, e.g. after a rollback.
        Process 0 alone scores checkpoints, so a training over several processes keeps its opponents."""
        if self.training.agent.multiprocess:
            return
        current = self.training_opponent or self.cfg.env.chess.opponent
        following = next_opponent(current, score.mean, score.sem, floor=self.cfg.env.chess.opponent)
        if following is not None:
            self._change_opponent(current, following, f"Elo {score}")

    def _change_opponent(self, current: str, following: str, why: str) -> None:
        """Train against `following` from the next game on: an event, a notice, the metrics and state.json."""
        with self._state_lock:
            self.training_opponent = following
            self._opponent_changed.set()
        log.info("curriculum: the agent now trains against %s instead of %s (%s)", following, current, why)
        self._record_event("opponent", f"{current} -> {following} ({why})")
        self.flash(f"new opponent: {following}")
        if self.metrics is not None:
            self.metrics.write(self.counters.env_step, {"train/opponent_elo": rung_of(following)})
        self.save_state()

    def _eval_plan(self, episodes: int) -> list[tuple[Any, int, float | None]]:
        """(env config, episodes, rung Elo or None) per env the evaluation plays on."""
        if self._rates and self._elo_estimate is None:
            best = self.training.best()
            self._elo_estimate = first_elo_estimate(self._actor_env_config(),
                                                    best[1].mean if best is not None else None)
        return eval_plan(held_out(self.cfg.env), episodes, elo_estimate=self._elo_estimate if self._rates else None,
                         rungs=self.cfg.scheduler.elo_rungs)

    def rollback(self, step: int | None = None, *, reason: str = "asked by the operator") -> int:
        """Go back to checkpoint `step` (default: the best-scored one); see Training.rollback. Raises TrainerError
        with the reason when it cannot (nothing changes then)."""
        restored = self.training.rollback(step)
        with self._lock:
            self.live.recent_scores.clear()  # they were the rolled-back policy's; they must not rank the next one
        self._rollback_rule.worse_in_a_row = 0
        metrics = self.training.checkpointer.metrics(restored)
        if self._rates and metrics is not None:
            self._elo_estimate = metrics["elo"]  # rate the restored agent against the rungs around its own Elo
        self._record_event("rollback", f"to checkpoint {restored}: {reason}")
        # The curriculum goes back with it, to the rung that checkpoint was trained against.
        rung = {elo: spec for spec, elo in LADDER}.get((metrics or {}).get("opponent_elo", math.nan))
        current = self.training_opponent or self.cfg.env.chess.opponent
        if self._curriculum and not self.training.agent.multiprocess and rung is not None and rung != current:
            self._change_opponent(current, rung, f"rolled back to checkpoint {restored}")
        self.flash(f"rolled back to checkpoint #{restored}")
        if self.obs is not None:
            self.obs.card("rollback", FLASH_S)
        if self.metrics is not None:
            self.metrics.write(self.counters.env_step, {"train/rollback_to": float(restored)})
        return restored

    def flash(self, text: str) -> None:
        """Show a one-off notice on the broadcast frame for FLASH_S seconds."""
        self._flash = (text, time.monotonic() + FLASH_S)

    def control(self, action: str, step: int | None = None) -> tuple[bool, str]:
        """An operator's request from the dashboard: (done or started, what happened, in words)."""
        if action not in CONTROLS:
            return False, f"unknown control {action!r}; one of: {', '.join(CONTROLS)}"
        if action == "stream_reconnect" and not self.stop_event.is_set():  # also while the agent compiles
            if self.broadcaster is None:
                return False, "this run does not stream (stream.enabled is false, or `dreamstream train`)"
            message = self.broadcaster.reconnect_now()
            self._record_event("stream_reconnect", f"asked by the operator: {message}")
            return True, message
        if self._scheduler is None or self.stop_event.is_set():
            return False, "the app is stopping" if self.stop_event.is_set() else "the app is still starting"
        if not self.training.is_learning:
            return False, "the random agent does not learn: no checkpoints, rollbacks or pauses"
        learner = self.training.learner
        if action == "pause":
            if learner.paused.is_set():
                return False, "learning is paused already"
            learner.paused.set()
            self._save_state_quietly()  # a restart keeps it paused
            self._record_event("paused", "learning paused by the operator (the agent plays on)")
            self.flash("learning paused by the operator")
            return True, "learning paused; the agent plays on with its current parameters"
        if action == "resume":
            if not learner.paused.is_set():
                return False, "learning is not paused"
            learner.paused.clear()
            self._save_state_quietly()
            self._record_event("resumed", "learning resumed by the operator")
            self.flash("learning resumed")
            return True, "learning resumed"
        if action == "rollback":
            # Not while the checkpoint job scores a snapshot: its score would then name replaced parameters.
            if not self._checkpoint_lock.acquire(blocking=False):
                return False, "a checkpoint is being scored and saved; try again when it is done"
            try:
                restored = self.rollback(step)
            except TrainerError as exc:
                return False, str(exc)
            except Exception as exc:
                log.exception("rollback failed")
                return False, f"rollback failed: {type(exc).__name__}: {exc}"
            finally:
                self._checkpoint_lock.release()
            return True, f"rolled back to checkpoint {restored}"
        if self._checkpoint_lock.locked():
            return False, "a checkpoint is being scored and saved already"
        if self.training.updates in (0, self.training.checkpoint_step):
            return False, ("nothing to checkpoint: no update since checkpoint "
                           f"{self.training.checkpoint_step}" if self.training.updates else "no update yet")
        from datetime import UTC, datetime

        self._scheduler.modify_job("checkpoint", next_run_time=datetime.now(UTC))
        what = f"evaluating {self.cfg.scheduler.eval_episodes} episodes, then saving" if self._evaluates else "saving"
        return True, f"checkpoint started ({what}); see the events"

    def _episode_done(self, step: int, episode: dict[str, Any]) -> None:
        score, length = float(episode["return"]), int(episode["length"])
        with self._lock:
            self.counters.episodes += 1
            if episode.get("result") != "reset":  # a game chat cut short must not rank checkpoints
                self.live.recent_scores.append(score)
        self.feed.on_episode(step, episode)
        log.debug("episode %d: score %.2f length %d", self.counters.episodes, score, length)
        assert self.metrics is not None
        self.metrics.write(step, {"episode/score": score, "episode/length": length})
        try:
            with self.sessions.begin() as session:
                record_episode(session, self.run_id, env_id=self.cfg.env.id, episode=episode, env_step=step)
        except Exception:
            # The metrics row above already holds the result; a failing database must not stop play.
            log.exception("could not store episode %d in the database", self.counters.episodes)

    # -- compositor ---------------------------------------------------------------------------------------

    def _overlay_state(self):
        """The broadcast frame's data: counters for the HUD, notices, and the feed's panels."""
        training = self.training.status() if self.training is not None else {}
        with self._lock:
            c, live = self.counters, self.live
            frame_age = time.monotonic() - live.frame_at if live.frame is not None else None
            age = training.get("checkpoint_age_s")
            hud = {
                "env steps": c.env_step,
                "updates": c.updates,
                "env fps": self._fps["env"],
                "updates / s": self._fps["updates"] if training.get("updates") is not None else None,
                "train ratio": training.get("train_ratio"),
                "checkpoint": f"#{training['checkpoint']} · {_duration_short(age)}"
                if training.get("checkpoint") is not None else None,
                "uptime": _duration(time.monotonic() - self._started_at),
                "episodes": c.episodes,
            }
            action = live.last_action
        notice = self.notice
        flash, flash_until = self._flash
        if not notice and flash and time.monotonic() < flash_until:
            notice = flash
        if not notice and frame_age is not None and frame_age > STALE_FRAME_S:
            notice = "agent restarting - be right back"
        if not notice and self.broadcaster is not None and self.broadcaster.health()["state"] == "reconnecting":
            notice = "stream reconnecting"
        chat, poll = self._chat_panels()
        return self.feed.state(hud, action=action, notice=notice, chat=chat, poll=poll)

    def _compose_loop(self, stop: threading.Event) -> None:
        """Compose the broadcast frame at the stream's fps and offer it; never blocks on the encoder."""
        assert self.broadcaster is not None
        s = self.cfg.stream
        layout = Layout(width=s.width, height=s.height)
        self.broadcaster.offer(fallback_frame(layout, "Starting..."))
        brb, failed_at = fallback_frame(layout, "Be right back"), -math.inf
        while not stop.is_set():
            # Phase-locked to the pacer: one fresh frame per frame sent (none dropped or repeated). If the
            # encoder is down, the timeout keeps composing for the dashboard's preview.
            self.broadcaster.wait_tick(2.0 / s.fps)
            with self._lock:
                frame = self.live.frame
            try:
                composed = compose(frame, self._overlay_state(), layout)
            except Exception:  # a bug drawing one frame: the card, not the last frame frozen for good
                if time.monotonic() - failed_at > 60.0:
                    log.exception("composing the broadcast frame failed; showing 'Be right back' meanwhile")
                    failed_at = time.monotonic()
                composed = brb
            self._composed = composed
            self.broadcaster.offer(composed)
        # Stopping: the last checkpoint and the encoder's end can take a while; viewers see the card meanwhile.
        self.broadcaster.offer(brb)

    def _is_playing(self) -> bool:
        with self._lock:
            return self.live.frame is not None and time.monotonic() - self.live.frame_at < STALE_FRAME_S

    def _obs_hud(self) -> dict[str, str]:
        from overlays import format_value

        return {label: f"{label}: {format_value(value)}" for label, value in self._overlay_state().hud.items()}

    def frame_jpeg(self) -> bytes | None:
        frame = self._composed
        if frame is None:
            return None
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        return buf.tobytes() if ok else None

    # -- status, state, events ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Plain-data snapshot for the dashboard and tests."""
        with self._lock:
            c = self.counters
            counters = {"env_steps": c.env_step, "episodes": c.episodes, "updates": c.updates,
                        "session": c.sessions, "env_fps": round(self._fps["env"], 2),
                        "uptime": _duration(time.monotonic() - self._started_at)}
        return {
            "run_name": self.run_name,
            "version": __version__,
            "env_id": self.cfg.env.id,
            "agent": self._agent_name(),
            "mode": self.mode,
            "counters": counters,
            "components": self.supervisor.status(),
            "stream": self.broadcaster.health() if self.broadcaster is not None else {},
            "training": self._training_status(),
            "obs": self.obs.stats if self.obs is not None else {},
            "chat": self._chat_status(),
            "notice": self.notice,
            "disk": self.disk,
            "metrics": self.metrics.health() if self.metrics is not None else {},
            "hls_preview": bool(self.broadcaster is not None and self.cfg.stream.hls
                                and (self.rundir.hls_dir / "index.m3u8").exists()),
            "stopping": self.stop_event.is_set(),
        }

    def _training_status(self) -> dict[str, Any]:
        if self.training is None:
            return {}
        status = self.training.status()
        if self.training.is_learning:
            best = self.training.best() if self.training.checkpointer is not None else None
            status["best_checkpoint"] = None if best is None else \
                {"step": best[0], "score": round(best[1].mean, 4), "sem": round(best[1].sem, 4)}
            status["checkpoints"] = self.training.checkpoints()
            # Here, not in Training.status(): that one runs for every composed broadcast frame.
            status["device_memory"] = self.training.agent.device_memory()
            status["ranked_by"] = "the last 100 training episodes" if not self._evaluates else \
                f"Elo from {self.cfg.scheduler.eval_episodes} games against the ladder" if self._rates else \
                f"{self.cfg.scheduler.eval_episodes} evaluation episodes"
            status["last_eval"] = self.last_eval
            status["worse_in_a_row"] = self._rollback_rule.worse_in_a_row
            if self.cfg.env.id == "chess":
                status["opponent"] = self.training_opponent or self.cfg.env.chess.opponent
        return status

    def save_state(self) -> None:
        """Write the counters (and the curriculum's opponent, the operator's pause) atomically to state.json, and
        the learning curves to metrics/curves.json (a kill -9 leaves the previous copies)."""
        with self._state_lock:
            with self._lock:
                state = {"env_step": self.counters.env_step, "episodes": self.counters.episodes,
                         "updates": self.counters.updates, "sessions": self.counters.sessions,
                         "saved_at": time.time(), "version": __version__}
            learner = self.training.learner if self.training is not None else None
            if learner.paused.is_set() if learner is not None and self._with_dashboard else self._stored_paused:
                state["paused"] = True
            state["rollback"] = {"worse_in_a_row": self._rollback_rule.worse_in_a_row,
                                 "auto_rollback_to": self._auto_rollback_to}
            if self.training_opponent is not None:
                state["curriculum"] = {"opponent": self.training_opponent, "from": self.cfg.env.chess.opponent}
            elif self._stored_curriculum is not None and not self._curriculum:
                state["curriculum"] = self._stored_curriculum  # not in use this session: kept for the next
            self.rundir.write_state(state)
            version = self.feed.curves.version
            if version != self._curves_saved:  # unchanged curves are not written again
                # (a kill -9 before the next save: the rows written since are caught up at start)
                atomic_write_text(self._curves_path, self.feed.curves_json(state["env_step"]))
                self._curves_saved = version

    @property
    def _curves_path(self) -> Path:
        return self.rundir.metrics_dir / "curves.json"

    def _load_curves(self) -> None:
        """Resume the run's learning curves; they are only pictures, so nothing here stops a start."""
        metrics_path = self.rundir.metrics_dir / "metrics.jsonl"
        skip_all = lambda: metrics_path.stat().st_size if metrics_path.exists() else 0
        try:
            self.feed.load_curves(self._curves_path, metrics_path)
        except Exception as exc:
            log.warning("the learning curves could not be loaded (%s: %s); they start empty", type(exc).__name__, exc)
            self.feed.reset_curves(skip_to=skip_all())
            return
        # Compared with the state.json the curves were saved with (their rows may reach a little further: a
        # kill -9 resumes the counters from the last save, and the episodes played since are still shown).
        last = self.feed.curves.saved_state_step
        if last is not None and last > self.counters.env_step:  # state.json was reset: its steps start again
            log.warning("the learning curves were saved at env step %d but the run is at %d (state.json was "
                        "reset?); they start empty", last, self.counters.env_step)
            self.feed.reset_curves(skip_to=skip_all())

    def _save_state_quietly(self) -> None:
        """save_state for a control that has taken effect already: a failing write is logged, not raised."""
        try:
            self.save_state()
        except Exception:
            log.exception("could not write state.json or metrics/curves.json; the change holds for this session")

    def report_status(self) -> None:
        """Update the FPS figures, write a metrics row and one status line."""
        now = time.monotonic()
        with self._lock:
            step, updates = self.counters.env_step, self.counters.updates
            learner = self.training.learner if self.training is not None else None
            if learner is not None:  # live (the counters' copy moves only with the learner's metrics rows)
                updates = learner.updates
            then, then_step, then_updates = self._last_report
            self._fps["env"] = (step - then_step) / max(now - then, 1e-6)
            self._fps["updates"] = max(0, updates - then_updates) / max(now - then, 1e-6)
            self._last_report = (now, step, updates)
            episodes = self.counters.episodes
        row = {"fps/env": self._fps["env"]}
        health = self.broadcaster.health() if self.broadcaster is not None else None
        if health is not None:
            row.update({"stream/frames_written": health["frames_written"], "stream/restarts": health["restarts"]})
        if self.metrics is not None:
            self.metrics.write(step, row)
        stream_text = f", stream {health['state']}" if health is not None else ""
        train = self.training.status() if self.training is not None else {}
        train_text = (f", {train['updates']} updates ({train['learner']}, ratio {train['train_ratio']}, "
                      f"{train['s_per_update']} s/update)") if "updates" in train else ""
        log.info("env step %d, %d episodes, %.1f env steps/s%s%s", step, episodes, self._fps["env"], train_text,
                 stream_text)

    def _record_event(self, kind: str, message: str = "") -> None:
        if self.sessions is None or self.run_id is None:
            return
        try:
            with self.sessions.begin() as session:
                add_event(session, self.run_id, kind, message, self.counters.env_step)
        except Exception:
            log.exception("could not store event %s", kind)


def _duration_short(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m" if seconds < 3600 else f"{seconds // 3600}h"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86_400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"
