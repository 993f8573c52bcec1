"""The web console door: server-rendered HTML under /console (ConsoleDoor in routes.py)."""
