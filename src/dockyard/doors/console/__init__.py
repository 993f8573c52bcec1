"""The web console door: server-rendered HTML under /console (see routes.py)."""

from dockyard.doors.console.routes import ConsoleDoor

__all__ = ["ConsoleDoor"]
