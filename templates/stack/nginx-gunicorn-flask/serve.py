"""The server launcher: what ``python -m <package> serve`` does (nginx, gunicorn, Flask).

The layout of AWS's own sample: nginx listens on the port and buffers requests, gunicorn
serves the Flask app on a Unix socket behind it. This process starts both, and on SIGTERM
stops them gracefully (nginx finishes its connections, gunicorn its requests) and exits 0.
If either dies on its own, the other is stopped and the exit code is non-zero, so the
container restarts rather than serving half a stack. Settings come from the environment:
``SAGEMAKER_BIND_TO_PORT`` (8080), ``SAGEMAKER_MODEL_SERVER_WORKERS`` (one per CPU),
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s), ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6) and
``MODEL_SERVER_READ_TIMEOUT`` (20 s: how long a client may go silent mid-request).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from . import gunicorn_server
from .environment import ServerSettings, bind_port, configure_logging
from .inference import no_such_path, too_large

log = logging.getLogger(__name__)

STOP_SECONDS = 28  # SageMaker sends SIGKILL 30 s after SIGTERM.

# %-placeholders only: nginx itself uses $ and braces.
NGINX_CONF = """\
worker_processes auto;
daemon off;
pid %(run_dir)s/nginx.pid;
error_log stderr warn;

events {
    worker_connections 1024;
}

http {
    # The app logs every request it answers (access_log.py). nginx logs only the 4xx it
    # answers itself (no upstream status: gunicorn never saw the request), as the same JSON.
    map "$status:$upstream_status" $refused_here {
        ~^4..:$ 1;
        default 0;
    }
    map $status $reason {
        404 "%(not_found)s";
        408 "%(stalled)s";  # sent to no one: nginx closes the connection
        413 "%(too_large)s";
        414 "%(uri_too_long)s";
        default "%(bad_request)s";
    }
    map $time_iso8601 $utc_seconds {
        ~^(?<utc>.+)\\+00:00$ $utc;
        default $time_iso8601;
    }
    map $msec $milliseconds {
        ~\\.(?<ms>\\d+)$ $ms;
    }
    map $request_time $latency_ms {
        "~^0\\.0{0,2}(?<ms>\\d+)$" $ms;
        ~^(?<s>\\d+)\\.(?<ms>\\d+)$ $s$ms;
        default 0;
    }
    map $content_length $bytes_in {
        ~^\\d+$ $content_length;
        default 0;
    }
    # What the client asked for: an error page has its own $uri, and GET for its method.
    map $request_uri $request_path {
        ~^(?<path>[^?]*) $path;
    }
    map $request $request_verb {
        ~^(?<verb>\\S+) $verb;
    }
    log_format refused escape=json '{"time": "$utc_seconds.${milliseconds}Z", '
        '"level": "INFO", "method": "$request_verb", "path": "$request_path", "status": $status, '
        '"latency_ms": $latency_ms, "bytes_in": $bytes_in, "bytes_out": $body_bytes_sent, '
        '"content_type": "$content_type", "accept": "$http_accept", "error": "$reason"}';
    access_log /dev/stderr refused if=$refused_here;
    client_body_temp_path %(run_dir)s/client_body;
    proxy_temp_path %(run_dir)s/proxy;
    fastcgi_temp_path %(run_dir)s/fastcgi;
    uwsgi_temp_path %(run_dir)s/uwsgi;
    scgi_temp_path %(run_dir)s/scgi;
    client_max_body_size %(max_body)d;
    client_body_buffer_size 1m;
    # A client silent this long mid-request (or not reading its answer) is dropped (408).
    client_header_timeout %(client_timeout)ds;
    client_body_timeout %(client_timeout)ds;
    send_timeout %(client_timeout)ds;
    keepalive_timeout 75s;

    upstream gunicorn {
        server unix:%(socket)s;
        keepalive 32;
    }

    server {
        listen %(port)d deferred;
        # nginx's own answers have the app's error shape: the reason, one line of text.
        # (Locations with a URI: a bad request line has none to go to a named location.)
        error_page 400 494 /_error/400;
        error_page 404 /_error/404;
        error_page 413 /_error/413;
        error_page 414 /_error/414;
        error_page 500 /_error/500;
        # gunicorn not listening yet (starting) or any more: unavailable, not a bad gateway.
        error_page 502 503 =503 /_error/503;
        error_page 504 /_error/504;

        location ~ ^/(ping|invocations|execution-parameters)$ {
            # Until gunicorn has made its socket, it is starting: 503, without the [crit]
            # line nginx logs for each failed connect(). (-e sees files, directories and
            # links only; gunicorn makes the socket srwxrwxrwx, which -x sees.)
            if (!-x %(socket)s) {
                return 503;
            }
            proxy_pass http://gunicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_read_timeout %(read_timeout)ds;
            proxy_send_timeout %(read_timeout)ds;
        }

        location /_error/ {
            internal;
            client_max_body_size 0;  # A 413's body must not get a second 413 here.
            default_type text/plain;
            charset utf-8;

            location = /_error/400 {
                internal;
                return 400 "%(bad_request)s\n";
            }
            location = /_error/404 {
                internal;
                return 404 "%(not_found)s\n";
            }
            location = /_error/413 {
                internal;
                return 413 "%(too_large)s\n";
            }
            location = /_error/414 {
                internal;
                return 414 "%(uri_too_long)s\n";
            }
            location = /_error/500 {
                internal;
                return 500 "%(internal_error)s\n";
            }
            location = /_error/503 {
                internal;
                return 503 "%(unavailable)s\n";
            }
            location = /_error/504 {
                internal;
                return 504 "%(no_answer)s\n";
            }
        }

        location / {
            return 404;
        }
    }
}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("nginx is not installed (the Dockerfile installs it: apt-get nginx)")
    return found


def write_nginx_conf(run_dir: Path, socket: Path, settings: ServerSettings) -> Path:
    conf = run_dir / "nginx.conf"
    conf.write_text(
        NGINX_CONF
        % {
            "run_dir": run_dir,
            "socket": socket,
            "port": settings.port,
            "max_body": settings.max_payload_bytes,
            "read_timeout": settings.backstop_timeout,
            "client_timeout": settings.read_timeout,
            "bad_request": "nginx could not read the request (its line, a header, or its body)",
            "not_found": no_such_path("$request_path"),
            "stalled": f"the request (head or body) stalled for {settings.read_timeout} s",
            "too_large": too_large(settings.max_payload_bytes),
            "uri_too_long": "the request line is too long",
            "internal_error": "nginx failed to handle the request (see its error log)",
            "unavailable": "the model server is starting or stopping",
            "no_answer": f"gunicorn did not answer within {settings.backstop_timeout} s",
        }
    )
    return conf


def _stop_all(nginx: subprocess.Popen[bytes], gunicorn: subprocess.Popen[bytes]) -> None:
    """nginx first (SIGQUIT: it stops listening and finishes its requests, which still need
    gunicorn), then gunicorn (SIGTERM: graceful); SIGKILL whatever outlives the deadline."""
    deadline = time.monotonic() + STOP_SECONDS
    for process, signum in ((nginx, signal.SIGQUIT), (gunicorn, signal.SIGTERM)):
        if process.poll() is None:
            process.send_signal(signum)
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    # nginx binds the port: see first that it is free, or say which one is taken and how to
    # pick another, before anything is started (nginx would retry for 2 s, then exit).
    bind_port(settings.port).close()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    run_dir = Path(tempfile.mkdtemp(prefix="serve-"))
    run_dir.chmod(0o755)  # nginx workers drop root: they need to reach the socket.
    socket = run_dir / "gunicorn.sock"
    conf = write_nginx_conf(run_dir, socket, settings)
    try:
        nginx = subprocess.Popen([nginx_binary(), "-e", "stderr", "-c", str(conf)])
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.serve", f"unix:{socket}"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        while not stop.wait(0.2):
            if nginx.poll() is not None or gunicorn.poll() is not None:
                log.error(
                    "nginx exited with %s, gunicorn with %s: stopping",
                    nginx.poll(),
                    gunicorn.poll(),
                )
                break
        _stop_all(nginx, gunicorn)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if stop.is_set() else 1


def run_gunicorn(bind: str) -> int:
    """The launcher's child process: gunicorn on the Unix socket nginx proxies to."""
    configure_logging()
    return gunicorn_server.run(bind, ServerSettings.from_env())


if __name__ == "__main__":
    sys.exit(run_gunicorn(sys.argv[1]))
