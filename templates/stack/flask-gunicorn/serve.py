"""The server launcher: what ``python -m <package> serve`` does (Flask on gunicorn).

gunicorn binds the port in its master process, then forks the workers; each worker loads
the model in the background (``/ping`` is 503 until then). SIGTERM stops accepting
connections, lets in-flight requests finish, and exits 0; a worker that dies is replaced.
Settings come from the environment: ``SAGEMAKER_BIND_TO_PORT`` (8080),
``SAGEMAKER_MODEL_SERVER_WORKERS`` (one per CPU), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s)
and ``MODEL_SERVER_READ_TIMEOUT`` (20 s: how long a client may go silent mid-request).

No proxy buffers requests here: gunicorn's threads read them, so a client that stalls
mid-request holds a thread until that read timeout (``gunicorn_server``).
"""

from __future__ import annotations

from .environment import ServerSettings, bind_port, configure_logging
from .gunicorn_server import run


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    # gunicorn would retry a port in use for 5 s, then exit with its own terse log line:
    # see first that the port is free, or say which one is taken and how to pick another.
    bind_port(settings.port).close()
    return run(f"0.0.0.0:{settings.port}", settings)
