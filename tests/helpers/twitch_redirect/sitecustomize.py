"""Test-only: on start-up of a `dreamstream` child process, point twitchio at the local FakeTwitch whose port
is in FAKE_TWITCH_PORT (tests put this folder on PYTHONPATH; production code has no such hook)."""

import os

if os.environ.get("FAKE_TWITCH_PORT"):
    import twitchio.eventsub.websockets
    import twitchio.http

    _base = f"http://127.0.0.1:{os.environ['FAKE_TWITCH_PORT']}"
    twitchio.http.Route.BASE = f"{_base}/helix/"
    twitchio.http.Route.ID_BASE = f"{_base}/"
    twitchio.eventsub.websockets.WSS = f"ws://127.0.0.1:{os.environ['FAKE_TWITCH_PORT']}/ws"
