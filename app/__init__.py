"""The application layer: CLI, config, wiring, dashboard, chat, scheduler jobs and storage.

Only this package reads environment variables, touches the database or decides what runs when.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dreamstream")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
