"""The operator's web dashboard: `create_app(config, services)` builds it; `DashboardServer` serves it."""

from app.dashboard.app import DashboardServices, create_app
from app.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "DashboardServices", "create_app"]
