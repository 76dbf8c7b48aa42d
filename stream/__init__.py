"""Every process that broadcasts: the supervised ffmpeg encoder and its targets (file, RTMP, Twitch).

Frames arrive through `Broadcaster.offer`, which never blocks; nothing here imports the app.
"""

from stream.broadcaster import Broadcaster, prune_recordings
from stream.config import StreamConfig
from stream.encoder import EncoderProcess
from stream.errors import StreamError
from stream.ffmpeg_args import Output, Sink, check_ffmpeg, ffmpeg_argv, output_for, redact
from stream.local_server import LocalRtmpServer
from stream.obs import ObsConfig, ObsController, ObsRequestError
from stream.obs_headless import HeadlessObs

__all__ = ["Broadcaster", "EncoderProcess", "HeadlessObs", "LocalRtmpServer", "ObsConfig", "ObsController",
           "ObsRequestError", "Output", "Sink", "StreamConfig", "StreamError", "check_ffmpeg", "ffmpeg_argv",
           "output_for", "prune_recordings", "redact"]
