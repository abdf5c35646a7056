"""/api/v1: the history as an HTTP API (FastAPI), documented at /openapi.json.

`routes` holds the paths, `models` the response models, `problems` the RFC 9457 error shape
that every failure takes. `exporters.http` mounts the router beside /metrics and /healthz.
"""

from exporters.api.problems import install as install_problem_handlers
from exporters.api.routes import build_router

__all__ = ["build_router", "install_problem_handlers"]
