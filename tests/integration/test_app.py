"""The walking skeleton end to end: `dreamstream run` as `make run` starts it, with real ffmpeg, SQLite,
HTTP and signals. One app process is shared by the first tests of this module, in file order; the last of them
shuts it down and resumes the run, and the next one resumes it with an incompatible config."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time

import psutil
import pytest
import yaml

from tests.conftest import DREAMSTREAM, PATIENCE_S, AppProcess, ffprobe, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    # The default config, as `make run` uses it; only the port differs so tests never collide.
    app = AppProcess(["run", "--dashboard.port", "0"], root / "run", root / "output.log").start()
    yield app
    app.kill()


def launch_chromium(pw):
    """Debian's headless Chromium, quiet: no sandbox (root in CI), no GPU, no background traffic."""
    return pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


def open_page(browser):
    """A new page whose waits allow PATIENCE_S (Playwright's 30 s default fails on a loaded CI machine)."""
    page = browser.new_page()
    page.set_default_timeout(PATIENCE_S * 1000)
    return page


def recordings(app: AppProcess) -> list:
    return sorted((app.logdir / "recordings").glob("stream-*.flv"))


def test_status_page_answers(live) -> None:
    page = wait_for(lambda: live.get("/"), "the status page").decode()
    assert "<title>DreamStream</title>" in page
    status = wait_for(lambda: (s := live.status())["counters"]["env_steps"] > 0 and s, "env steps to count")
    assert status["run_name"] == "run" and status["env_id"] == "crafter"
    assert status["agent"] == "DreamerV3"
    assert {name: c["state"] for name, c in status["components"].items()} == {
        "actor": "running", "compositor": "running", "dashboard": "running", "learner": "running",
        "dreamer": "running", "chat": "running"}
    assert status["training"]["compile_s"] > 0 and status["training"]["learner"] in (
        "waiting for data", "waiting for env steps", "training")


def test_a_growing_valid_video_is_written_to_the_run_dir(live) -> None:
    first = wait_for(lambda: recordings(live) and recordings(live)[-1].stat().st_size > 50_000 and recordings(live),
                     "a recording to be written")[-1]
    size = first.stat().st_size
    wait_for(lambda: first.stat().st_size > size, "the recording to grow")
    info = ffprobe(first)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["profile"], video["width"], video["height"], video["r_frame_rate"]) == \
        ("h264", "Main", 1280, 720, "30/1")
    assert (audio["codec_name"], audio["profile"]) == ("aac", "LC")
    health = live.status()["stream"]
    assert health["state"] == "live" and health["frames_written"] > 0
    assert health["output"].endswith("recordings/stream-%Y%m%d-%H%M%S.flv (+1 more)")  # + the HLS preview


def test_metrics_and_config_are_in_the_run_dir(live) -> None:
    saved = yaml.safe_load((live.logdir / "config.yaml").read_text())
    assert saved["env"]["id"] == "crafter" and "stream_key" not in saved["stream"]
    rows = wait_for(lambda: [json.loads(line) for line in
                             (live.logdir / "metrics" / "metrics.jsonl").read_text().splitlines()
                             if "fps/env" in line], "a status row in metrics.jsonl", )
    assert rows[-1]["fps/env"] > 0
    assert "session 1" in (live.logdir / "logs" / "dreamstream.log").read_text()


def test_a_second_process_on_the_same_run_dir_is_refused(live, tmp_path) -> None:
    out = subprocess.run([DREAMSTREAM, "run", "--logdir", str(live.logdir), "--dashboard.port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"RunDirError: run dir {live.logdir} is in use by pid {live.proc.pid}; stop that run or pass another --logdir")


def test_dead_ffmpeg_is_restarted_while_play_goes_on(live) -> None:
    before = wait_for(lambda: (h := live.status()["stream"])["ffmpeg_pid"] and h, "ffmpeg to run")
    steps = live.status()["counters"]["env_steps"]
    psutil.Process(before["ffmpeg_pid"]).kill()
    after = wait_for(lambda: (h := live.status()["stream"])["restarts"] > before["restarts"] and h["state"] == "live"
                     and h["ffmpeg_pid"] not in (None, before["ffmpeg_pid"]) and h, "the stream to come back")
    assert after["frames_written"] > before["frames_written"]
    wait_for(lambda: live.status()["counters"]["env_steps"] > steps + 30, "play to go on")
    assert live.proc.poll() is None


def test_dashboard_in_headless_chromium(live, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = open_page(browser)
            page.goto(live.url())
            page.get_by_test_id("run-name").filter(has_text="run").wait_for()
            cell = page.locator('#counters td[data-key="env_steps"]')
            cell.wait_for()
            first = int(cell.inner_text().replace(",", ""))
            page.wait_for_function(
                f"() => parseInt(document.querySelector('#counters td[data-key=\"env_steps\"]')"
                f".textContent.replace(/,/g, '')) > {first}")
            assert page.locator("#components").inner_text().count("running") == 6  # + the dreamer and chat
            disk = page.locator('#counters td[data-key="disk free"]').inner_text()
            assert re.fullmatch(r"[\d.,]+ of [\d.,]+ GB( \(low!\))?", disk), disk
            # The preview plays the encoded HLS stream itself: the video advances.
            page.wait_for_function("() => { const v = document.getElementById('stream-video');"
                                   " return !v.hidden && v.readyState >= 2 && v.currentTime > 1; }")
            assert page.evaluate("document.getElementById('stream-video').videoWidth") == 1280
            # The whole run's learning curves: the episode scores as a line (episodes end before the first
            # update), the world model's loss from the first update on (its first value is a dot).
            page.locator('#curves figure[data-curve="episode score"] polyline').wait_for()
            loss = page.locator('#curves figure[data-curve="world-model loss"]')
            loss.locator("polyline, circle").first.wait_for()
            assert page.locator("#curves figure").count() == 4
            assert "values" in loss.locator(".range").inner_text()
            assert "world-model loss: " in loss.locator("figcaption").inner_text()
            page.screenshot(path=str(tmp_path / "dashboard.png"))
            # "Reconnect now": a planned restart of the encoder (not a failure), and the stream is live again.
            page.on("dialog", lambda dialog: dialog.accept())
            page.click("#ctl-stream-reconnect")
            page.get_by_test_id("stream-control-result").filter(has_text="restarting the live stream").wait_for()
            wait_for(lambda: live.status()["stream"]["scheduled_reconnects"] == 1, "the encoder's restart")
            wait_for(lambda: live.status()["stream"]["state"] == "live", "the stream to be live again")
            assert "stream_reconnect" in [e["kind"] for e in json.loads(live.get("api/events?limit=50"))]
        finally:
            browser.close()


def poll_panel(app: AppProcess):
    """The broadcast frame's poll panel (1280x720 layout), as pixels."""
    import cv2
    import numpy as np

    frame = cv2.imdecode(np.frombuffer(app.get("/api/frame.jpg"), np.uint8), cv2.IMREAD_GRAYSCALE)
    return frame[180:424, 1008:1264].astype(np.float32)


def test_local_chat_box_runs_a_poll_on_the_broadcast(live) -> None:
    from playwright.sync_api import sync_playwright

    before = poll_panel(live)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = open_page(browser)
            page.goto(live.url())
            box = page.get_by_label("chat message")
            box.fill("!poll 120 Which game next? | chess | crafter")
            box.press("Enter")
            log = page.get_by_test_id("chat-log")
            log.filter(has_text="poll: Which game next? 1 = chess, 2 = crafter (!vote N, 120 s)").wait_for()
            page.get_by_test_id("poll").filter(has_text="Which game next? 1. chess: 0").wait_for()
            page.wait_for_timeout(2100)  # the operator's own command cooldown
            box.fill("!vote 2")
            box.press("Enter")
            page.get_by_test_id("poll").filter(has_text="2. crafter: 1").wait_for()
            page.wait_for_timeout(2100)
            box.fill("!dream")
            box.press("Enter")
            log.filter(has_text="→ dream (asked by operator)").wait_for()
        finally:
            browser.close()
    wait_for(lambda: abs(poll_panel(live) - before).mean() > 2, "the poll to appear on the broadcast frame")


def test_sigterm_shuts_down_cleanly_and_a_second_run_resumes(live, tmp_path) -> None:
    ffmpeg_pids = [p.pid for p in live.children() if p.name() == "ffmpeg"]
    assert ffmpeg_pids, "ffmpeg should be a child of the app"
    last_seen = live.status()["counters"]["env_steps"]
    assert live.stop(signal.SIGTERM) == 0
    for pid in ffmpeg_pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, "orphan ffmpeg"
    state = json.loads((live.logdir / "state.json").read_text())
    assert state["env_step"] >= last_seen and state["sessions"] == 1
    assert not (live.logdir / "dashboard.url").exists()
    with sqlite3.connect(live.logdir / "dreamstream.db") as db:
        kinds = [k for (k,) in db.execute("select kind from events order by id")]
    assert kinds[0] == "session_started" and kinds[-1] == "session_stopped"
    assert "received SIGTERM" in live.output

    # Same command, same run dir: the step counter continues.
    again = AppProcess(["run", "--dashboard.port", "0", "--run.steps", str(state["env_step"] + 30)], live.logdir,
                       tmp_path / "again.log").start()
    try:
        assert again.proc.wait(timeout=180) == 0, again.output
    finally:
        again.kill()
    resumed = json.loads((live.logdir / "state.json").read_text())
    assert resumed["sessions"] == 2 and resumed["env_step"] == state["env_step"] + 30
    assert f"env step {state['env_step']}" in again.output  # the start line names where it resumed


def test_incompatible_config_on_resume_names_the_keys(live) -> None:
    logdir = live.logdir  # made by the default config, stopped by the test above (or here, when run alone)
    wait_for(lambda: (logdir / "config.yaml").exists(), "the run's config")
    live.stop(signal.SIGTERM)
    out = subprocess.run([DREAMSTREAM, "train", "--logdir", str(logdir), "--env.image_size", "32"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr == (f"ConfigError: run dir {logdir} was made with another config; these keys cannot change on "
                          "resume: env.image_size: 64 -> 32 (use a new --logdir)\n")


def test_kill_9_leaves_no_orphan_and_the_run_resumes(app_factory, tmp_path) -> None:
    logdir = tmp_path / "run"
    app = app_factory(["run", "--configs", "tiny", "--dashboard.port", "0"], logdir)
    wait_for(lambda: app.status()["stream"]["state"] == "live", "the stream to go live")
    wait_for(lambda: json.loads((logdir / "state.json").read_text())["env_step"] > 0, "a state save")
    wait_for(lambda: app.status()["counters"]["env_steps"] > 0, "the agent to act")
    children = app.children()
    ffmpeg = [p for p in children if p.name() == "ffmpeg"]
    assert len(ffmpeg) == 1 and len(children) >= 2  # the encoder and the policy process
    app.proc.kill()
    app.proc.wait()
    # ffmpeg reads EOF on its stdin, the policy process EOF on its pipe: both end by themselves.
    for child in children:
        wait_for(lambda c=child: not c.is_running() or c.status() == psutil.STATUS_ZOMBIE,
                 f"the orphaned {child.name()} to exit")
    saved = json.loads((logdir / "state.json").read_text())
    time.sleep(0.1)
    again = app_factory(["run", "--configs", "tiny", "--dashboard.port", "0", "--run.steps",
                         str(saved["env_step"] + 30)], logdir)
    assert again.proc.wait(timeout=180) == 0, again.output
    resumed = json.loads((logdir / "state.json").read_text())
    assert resumed["sessions"] == 2 and resumed["env_step"] == saved["env_step"] + 30


def test_stream_key_never_reaches_the_run_dir_or_output(app_factory, tmp_path) -> None:
    key = "live_987654321_SeCrEtKeY"
    logdir = tmp_path / "run"
    # A Twitch target whose ingest refuses: ffmpeg prints the full URL, which must be redacted. (The HLS preview
    # goes on meanwhile in the same ffmpeg, which shows the ingest's failure.)
    app = app_factory(["run", "--configs", "tiny", "twitch", "--dashboard.port", "0",
                       "--stream.twitch_ingest_url", "rtmp://127.0.0.1:9/app", "--stream.restart_backoff_max_s", "1"],
                      logdir, env={"TWITCH_STREAM_KEY": key})
    health = wait_for(lambda: (h := app.status()["stream"])["last_error"].startswith("the ingest failed") and h,
                      "ffmpeg to report the ingest's failure")
    # A network failure, not a refused key: no hint about the key.
    assert health["state"] == "reconnecting" and health["last_error"] == "the ingest failed: Connection refused"
    assert health["output"] == "rtmp://127.0.0.1:9/app/*** (+1 more)" and key not in json.dumps(health)
    page = app.get("/api/status").decode()
    assert app.stop() == 0
    leaks = [str(p) for p in logdir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaks == [] and key not in app.output and key not in page
    assert "rtmp://127.0.0.1:9/app/***" in (logdir / "logs" / "dreamstream.log").read_text()


def post_chat(app: AppProcess, text: str) -> list[str]:
    import urllib.request

    request = urllib.request.Request(app.url() + "api/chat", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())["replies"]


def test_a_passed_chat_reset_vote_ends_the_episode(app_factory, tmp_path) -> None:
    logdir = tmp_path / "run"
    app = app_factory(["run", "--configs", "tiny", "--dashboard.port", "0", "--stream.enabled", "false",
                       "--chat.reset_min_votes", "1", "--chat.reset_poll_s", "5"], logdir)
    wait_for(lambda: app.status()["counters"]["env_steps"] > 0, "the agent to act")
    assert app.status()["components"]["chat"]["state"] == "running"
    (announced,) = post_chat(app, "!reset")
    assert announced.startswith("operator wants to restart the game: !vote 1 for yes")
    lines = wait_for(lambda: [line["text"] for line in json.loads(app.get("api/chat"))["lines"]
                              if line["kind"] == "steer"], "the reset vote to pass")
    assert lines == ["reset_episode (chat vote 1 of 1)"]
    replies = [line["text"] for line in json.loads(app.get("api/chat"))["lines"] if line["kind"] == "reply"]
    assert replies == [announced, "poll closed: Restart the game? yes (1 of 1)"]
    episode = wait_for(lambda: [e for e in json.loads(app.get("api/episodes")) if e["result"] == "reset"],
                       "the episode to end")[0]
    assert episode["details"]["reset_by"] == "chat"
    steps = app.status()["counters"]["env_steps"]
    wait_for(lambda: app.status()["counters"]["env_steps"] > steps + 50, "play to go on")
    resets = [e for e in json.loads(app.get("api/episodes?limit=500")) if e["result"] == "reset"]
    assert len(resets) == 1  # one vote ends one game, never the next one too
    events = json.loads(app.get("api/events?limit=50"))
    assert any(e["kind"] == "chat_reset" and e["message"] == "chat vote 1 of 1" for e in events)
    assert any(e["kind"] == "chat" and e["message"] == "poll closed: Restart the game? yes (1 of 1)" for e in events)
    time.sleep(2.1)  # the operator's command cooldown
    assert post_chat(app, "!reset")[0].startswith("the game can be reset by vote again in")
    assert app.stop() == 0


def test_operator_pauses_checkpoints_and_rolls_back_from_the_dashboard(app_factory, tmp_path) -> None:
    """The dashboard's Training panel and buttons in headless Chromium, against the real app: a checkpoint
    scored by evaluation episodes, a pause that stops updates while play goes on, a rollback."""
    from playwright.sync_api import sync_playwright

    logdir = tmp_path / "run"
    app = app_factory(["run", "--configs", "tiny", "catch", "--dashboard.port", "0", "--stream.enabled", "false",
                       "--scheduler.eval_episodes", "3"], logdir)
    wait_for(lambda: app.status()["training"]["updates"] > 0, "the first update")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = open_page(browser)
            page.on("dialog", lambda dialog: dialog.accept())  # "Roll the agent back ...?"
            page.goto(app.url())
            page.locator("#training-panel").wait_for()
            page.locator("#no-frame").wait_for()  # the stream is off: a note, not a broken image
            assert page.locator("#preview").is_hidden()
            result = page.get_by_test_id("control-result")
            page.click("#ctl-rollback")
            result.filter(has_text="refused: no checkpoint has a score yet").wait_for()

            page.click("#ctl-checkpoint")
            result.filter(has_text="checkpoint started (evaluating 3 episodes, then saving)").wait_for()
            best = wait_for(lambda: app.status()["training"]["best_checkpoint"], "a scored checkpoint")
            page.locator('#training td[data-key="best checkpoint"]').filter(has_text=f"#{best['step']}:").wait_for()
            evals = [e for e in json.loads(app.get("api/episodes?limit=50")) if e["mode"] == "eval"]
            assert len(evals) == 3 and {e["details"]["checkpoint"] for e in evals} == {best["step"]}

            page.click("#ctl-pause")
            result.filter(has_text="learning paused").wait_for()
            wait_for(lambda: app.status()["training"]["learner"] == "paused", "the learner to pause")
            updates, steps = app.status()["training"]["updates"], app.status()["counters"]["env_steps"]
            wait_for(lambda: app.status()["counters"]["env_steps"] > steps + 30, "play to go on while paused")
            assert app.status()["training"]["updates"] == updates
            page.locator("#ctl-pause").filter(has_text="Resume learning").click()
            result.filter(has_text="learning resumed").wait_for()
            wait_for(lambda: app.status()["training"]["updates"] > updates, "learning to resume")

            assert page.locator("#ctl-stream-reconnect").is_hidden()  # no stream in this run
            # A second checkpoint, then back to the first one, chosen in the picker (the best may be either).
            page.click("#ctl-checkpoint")
            result.filter(has_text="checkpoint started").wait_for()
            kept = wait_for(lambda: len(c := app.status()["training"]["checkpoints"]) == 2 and c, "two checkpoints")
            assert [c["step"] for c in kept] == sorted((c["step"] for c in kept), reverse=True)  # newest first
            picker = page.get_by_test_id("checkpoint-picker")
            picker.locator("option").nth(1).wait_for(state="attached")
            first = kept[1]["step"]
            picker.select_option(str(first))
            assert f"#{first}: " in picker.locator("option:checked").inner_text()
            page.click("#ctl-rollback-to")
            result.filter(has_text=f"rolled back to checkpoint {first}").wait_for()
            page.screenshot(path=str(tmp_path / "controls.png"))
            page.click("#ctl-pause")  # paused when the app stops: it must come back paused
            result.filter(has_text="learning paused").wait_for()
        finally:
            browser.close()
    kinds = [e["kind"] for e in json.loads(app.get("api/events?limit=50"))]
    assert {"paused", "resumed", "rollback"} <= set(kinds)
    assert app.stop() == 0
    assert json.loads((logdir / "state.json").read_text())["paused"] is True
    again = app_factory(["run", "--configs", "tiny", "catch", "--dashboard.port", "0", "--stream.enabled", "false",
                         "--scheduler.eval_episodes", "3"], logdir)
    wait_for(lambda: again.status()["training"]["learner"] == "paused", "the restarted app to stay paused")
    updates, steps = again.status()["training"]["updates"], again.status()["counters"]["env_steps"]
    wait_for(lambda: again.status()["counters"]["env_steps"] > steps + 30, "play to go on after the restart")
    assert again.status()["training"]["updates"] == updates and "learning stays paused" in again.output
    assert again.stop() == 0
