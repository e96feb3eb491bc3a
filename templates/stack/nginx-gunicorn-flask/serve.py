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

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

from . import gunicorn_server
from .environment import ServerSettings, bind_port, configure_logging, cpu_count
from .gunicorn_server import HEAD_BYTES, HEAD_LINE_BYTES, HEADERS_TOO_LARGE, LINE_TOO_LONG
from .inference import no_such_path, too_large

log = logging.getLogger(__name__)

STOP_SECONDS = 28  # SageMaker sends SIGKILL 30 s after SIGTERM.
# nginx only relays bytes: a few processes are plenty on any instance.
MAX_NGINX_WORKERS = 4
# Connections one nginx worker may hold: clients and its connections to gunicorn together.
# Each costs about 0.5 KiB of nginx's memory, allocated at start: 16,384 is 8 MiB a worker.
# The kernel hands a new connection to any worker, so one may get most of them: each is sized
# for the whole load.
MAX_WORKER_CONNECTIONS = 16_384
# File descriptors nginx keeps for itself beyond its connections (logs, listening socket).
RESERVED_FILES = 64
# The kernel's queue of connections not yet accepted (as the other stacks').
BACKLOG = 2048

# %-placeholders only: nginx itself uses $ and braces.
NGINX_CONF = """\
%(user)sworker_processes %(workers)d;
worker_rlimit_nofile %(open_files)d;
daemon off;
pid %(run_dir)s/nginx.pid;
error_log stderr warn;

events {
    worker_connections %(connections)d;
}

http {
    # The app logs every request it answers (access_log.py). nginx logs only the 4xx it
    # answers itself (no upstream status: gunicorn never saw the request), as the same JSON.
    map "$status:$upstream_status" $refused_here {
        ~^4..:$ 1;
        default 0;
    }
    # The reason of an error page is its location's (error_page changes some statuses);
    # without one, the status's.
    map $uri $reason {
%(error_reasons)s
        default $status_reason;
    }
    map $status $status_reason {
        # Sent to no one: after client_header_timeout or client_body_timeout nginx closes
        # the connection without an answer (it has no way to send one), and logs this.
        408 "%(stalled)s";
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
    # (/dev/stderr is opened anew, which a user other than its owner may not: a pipe of the
    # launcher's own, which relays it.)
    access_log /dev/stderr refused if=$refused_here;
    client_body_temp_path %(run_dir)s/client_body;
    proxy_temp_path %(run_dir)s/proxy;
    fastcgi_temp_path %(run_dir)s/fastcgi;
    uwsgi_temp_path %(run_dir)s/uwsgi;
    scgi_temp_path %(run_dir)s/scgi;
    client_max_body_size %(max_body)d;
    client_body_buffer_size 1m;
    # The request line and each header line in one buffer, the whole head in 4; beyond, a
    # 414 (the line) or a 431 (the headers: nginx's 494). gunicorn counts the headers.
    large_client_header_buffers %(head_buffers)d %(head_line_bytes)d;
    # A client silent this long mid-request (or not reading its answer) is dropped: the
    # connection closed without an answer, logged as a 408 with the reason.
    client_header_timeout %(client_timeout)ds;
    client_body_timeout %(client_timeout)ds;
    send_timeout %(client_timeout)ds;
    keepalive_timeout 75s;

    upstream gunicorn {
        server unix:%(socket)s;
        keepalive 32;
    }

    server {
        listen %(port)d deferred backlog=%(backlog)d;
        # nginx's own answers have the app's error shape: the reason, one line of text.
        # (Locations with a URI: a bad request line has none to go to a named location.)
%(error_pages)s

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
            # A kept-alive connection to a worker that has just died fails before the
            # request reaches a model: send it again, on a live worker. POST too: an
            # invocation is a pure function of its body. Never after a timeout (a slow
            # prediction would run twice).
            proxy_next_upstream error non_idempotent;
        }

        location /_error/ {
            internal;
            client_max_body_size 0;  # A 413's body must not get a second 413 here.
            default_type text/plain;
            charset utf-8;

%(error_locations)s
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


def open_files_limit() -> int:
    """The most files this process (and nginx and gunicorn after it) may open: the soft limit
    raised to the hard one, which needs no privilege."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def user_directive() -> str:
    """nginx's ``user`` line. nginx started by root makes its temporary directories its
    workers' (chown) and switches them to that user (setuid), which root stripped of its
    capabilities may not do: then its workers stay root, as everything else here is (each
    logs that it could not set its groups, an [emerg] line nginx goes on after). Any other
    user runs nginx as itself, with no line."""
    if os.geteuid() != 0:
        return ""
    chown_setgid_setuid = (1 << 0) | (1 << 6) | (1 << 7)
    status = Path("/proc/self/status").read_text().splitlines()
    effective = int(next(line for line in status if line.startswith("CapEff:"))[7:], 16)
    if effective & chown_setgid_setuid == chown_setgid_setuid:
        return ""  # nginx's own default: the workers run as nobody
    return "user root root;\n"


def stalled_reason(seconds: int) -> str:
    """The reason nginx logs for a request it dropped after ``seconds`` of silence."""
    return f"the request (head or body) stalled for {seconds} s: closed without an answer"


BAD_REQUEST = "nginx could not read the request (its line, a header, or its body)"


def error_pages(settings: ServerSettings) -> dict[str, str]:
    """nginx's own answers in the app's error shape (the reason, one line of text), as the
    config's ``error_page`` lines, their locations, and the reason each one logs.

    Each page is at a location with a URI: a bad request line has none to go to a named one.
    """
    pages = [  # nginx's statuses, what the client gets, the reason
        ((400,), 400, BAD_REQUEST),
        ((404,), 404, no_such_path("$request_path")),
        ((413,), 413, too_large(settings.max_payload_bytes)),
        ((414,), 414, LINE_TOO_LONG),
        ((494,), 431, HEADERS_TOO_LARGE),
        # The client's faults nginx would answer with a 5xx: a 400 with the reason.
        ((501,), 400, "the request's Transfer-Encoding is not supported (only chunked)"),
        ((505,), 400, "the request's HTTP version is not supported (HTTP/1.0 and 1.1 are)"),
        ((500,), 500, "nginx failed to handle the request (see its error log)"),
        # gunicorn not listening yet (starting) or any more: unavailable, not a bad gateway.
        ((502, 503), 503, "the model server is starting or stopping"),
        ((504,), 504, f"gunicorn did not answer within {settings.backstop_timeout} s"),
    ]
    directives, reasons, locations = [], [], []
    for statuses, answer, reason in pages:
        uri = f"/_error/{statuses[0]}"
        changed = "" if statuses == (answer,) else f"={answer} "
        directives.append(f"error_page {' '.join(map(str, statuses))} {changed}{uri};")
        reasons.append(f'{uri} "{reason}";')
        block = [
            f"location = {uri} " + "{",
            "    internal;",
            f'    return {answer} "{reason}\\n";',
            "}",
        ]
        locations.append("\n".join(block))
    return {
        "error_pages": _indented(directives, 8),
        "error_reasons": _indented(reasons, 8),
        "error_locations": _indented(locations, 12),
    }


def _indented(blocks: list[str], spaces: int) -> str:
    return "\n".join(" " * spaces + line for block in blocks for line in block.splitlines())


def write_nginx_conf(run_dir: Path, socket: Path, settings: ServerSettings) -> Path:
    conf = run_dir / "nginx.conf"
    open_files = open_files_limit()
    conf.write_text(
        NGINX_CONF
        % {
            "user": user_directive(),
            "workers": min(cpu_count(), MAX_NGINX_WORKERS),
            "open_files": open_files,
            "connections": min(MAX_WORKER_CONNECTIONS, open_files - RESERVED_FILES),
            "backlog": BACKLOG,
            "head_buffers": HEAD_BYTES // HEAD_LINE_BYTES,
            "head_line_bytes": HEAD_LINE_BYTES,
            "run_dir": run_dir,
            "socket": socket,
            "port": settings.port,
            "max_body": settings.max_payload_bytes,
            "read_timeout": settings.backstop_timeout,
            "client_timeout": settings.read_timeout,
            "bad_request": BAD_REQUEST,
            "stalled": stalled_reason(settings.read_timeout),
            **error_pages(settings),
        }
    )
    return conf


def relay_to_stderr(source: IO[bytes]) -> None:
    """Copy what nginx writes to this process's stderr, as it comes, until nginx is gone."""
    while chunk := os.read(source.fileno(), 65536):
        os.write(sys.stderr.fileno(), chunk)


def _stop(process: subprocess.Popen[bytes], signum: int, deadline: float) -> None:
    """Send ``signum`` until ``process`` exits (nginx acts on no signal that comes before its
    master loop, so a stop just after its start would be lost), then its whole process group
    SIGKILL at ``deadline``: nginx's workers outlive a killed master."""
    while process.poll() is None:
        if time.monotonic() >= deadline:
            os.killpg(process.pid, signal.SIGKILL)
            break
        process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
    process.wait()


def _stop_all(nginx: subprocess.Popen[bytes], gunicorn: subprocess.Popen[bytes] | None) -> None:
    """nginx first (SIGQUIT: it stops listening and finishes its requests, which still need
    gunicorn), then gunicorn (SIGTERM: graceful); SIGKILL whatever outlives the deadline."""
    deadline = time.monotonic() + STOP_SECONDS
    _stop(nginx, signal.SIGQUIT, deadline)
    if gunicorn is not None:
        _stop(gunicorn, signal.SIGTERM, deadline)


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    # nginx binds the port: see first that it is free, or say which one is taken and how to
    # pick another, before anything is started (nginx would retry for 2 s, then exit).
    bind_port(settings.port).close()
    nginx_command = [nginx_binary(), "-e", "stderr", "-c"]
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
    gunicorn = None
    # Each in a process group of its own, which a stop can kill whole.
    nginx = subprocess.Popen(
        [*nginx_command, str(conf)], stderr=subprocess.PIPE, start_new_session=True
    )
    relay = threading.Thread(target=relay_to_stderr, args=(nginx.stderr,), daemon=True)
    relay.start()
    try:
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.serve", f"unix:{socket}"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        while not stop.wait(0.2):
            for name, process in (("nginx", nginx), ("gunicorn", gunicorn)):
                if process.poll() is not None:
                    log.error(
                        "%s exited with code %s (its log is above): stopping the server",
                        name,
                        process.returncode,
                    )
                    return 1
        return 0
    finally:
        _stop_all(nginx, gunicorn)
        relay.join(timeout=1)
        shutil.rmtree(run_dir, ignore_errors=True)


def run_gunicorn(bind: str) -> int:
    """The launcher's child process: gunicorn on the Unix socket nginx proxies to."""
    configure_logging()
    return gunicorn_server.run(bind, ServerSettings.from_env())


if __name__ == "__main__":
    sys.exit(run_gunicorn(sys.argv[1]))
