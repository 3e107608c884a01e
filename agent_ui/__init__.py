"""The web application (FastAPI + Jinja2): `create_app(settings)` builds it."""
from agent_ui.app import create_app

__all__ = ["create_app"]
