"""The web app in-process: status codes, content negotiation and limits."""

from __future__ import annotations
{% if cookiecutter.__web == "fastapi" %}
import asyncio
{%- endif %}
import dataclasses
{%- if cookiecutter.__web == "flask" %}
import errno
{%- endif %}
import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import access_log, codec, inference, model
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.environment import Paths, ServerSettings
from {{ cookiecutter.package_name }}.inference import ModelService

from .support import N_FEATURES, PROJECT, SAMPLE_REQUEST, lower

Response = tuple[int, dict[str, str], bytes]
Client = Callable[..., Response]

SETTINGS = ServerSettings(port=8080, workers=1, timeout=60, max_payload_bytes=1024 * 1024)


def make_client(service: ModelService, settings: ServerSettings = SETTINGS) -> Client:
    """``client(method, path, body=b"", headers={})`` -> (status, headers, body)."""
{%- if cookiecutter.__web == "fastapi" %}
    from fastapi.testclient import TestClient

    test_client = TestClient(create_app(service, settings))

    def client(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Response:
        response = test_client.request(method, path, content=body, headers=headers or {})
        return response.status_code, lower(response.headers.items()), response.content
{%- else %}
    test_client = create_app(service, settings).test_client()

    def client(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Response:
        response = test_client.open(path, method=method, data=body, headers=headers or {})
        return response.status_code, lower(response.headers.items()), response.data
{%- endif %}

    return client


@pytest.fixture(scope="module")
def client(service: ModelService) -> Client:
    return make_client(service)


def expected_labels(service: ModelService, rows: np.ndarray) -> list[str]:
    return [str(label) for label in model.predict(model.load(service.model_dir), rows)]


REQUEST_ROWS = np.loadtxt(SAMPLE_REQUEST, delimiter=",", ndmin=2)


def test_ping_is_200_with_an_empty_body_once_loaded(client: Client) -> None:
    status, _, body = client("GET", "/ping")
    assert (status, body) == (200, b"")


def test_ping_is_503_before_the_model_loads(trained) -> None:
    client = make_client(ModelService(trained.model))
    assert client("GET", "/ping")[0] == 503
    status, _, body = client(
        "POST", "/invocations", SAMPLE_REQUEST.read_bytes(), {"Content-Type": "text/csv"}
    )
    assert status == 503
    assert b"not loaded" in body


def test_ping_stays_503_when_the_model_fails_to_load(tmp_path: Path) -> None:
    service = ModelService(tmp_path / "no-model")
    service.load()
    assert service.failure
    assert make_client(service)("GET", "/ping")[0] == 503


def test_csv_in_csv_out(client: Client, service: ModelService) -> None:
    status, headers, body = client(
        "POST", "/invocations", SAMPLE_REQUEST.read_bytes(), {"Content-Type": "text/csv"}
    )
    assert status == 200, body
    assert headers["content-type"].startswith("text/csv")
    assert body.decode().splitlines() == expected_labels(service, REQUEST_ROWS)


def test_json_in_json_out(client: Client, service: ModelService) -> None:
    document = json.dumps({"instances": REQUEST_ROWS.tolist()}).encode()
    status, headers, body = client(
        "POST", "/invocations", document, {"Content-Type": "application/json"}
    )
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"predictions": expected_labels(service, REQUEST_ROWS)}


def test_accept_chooses_the_response_type(client: Client) -> None:
    status, headers, body = client(
        "POST",
        "/invocations",
        SAMPLE_REQUEST.read_bytes(),
        {"Content-Type": "text/csv", "Accept": "application/json"},
    )
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert len(json.loads(body)["predictions"]) == len(REQUEST_ROWS)


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"1,2,3,4", {"Content-Type": "application/xml"}, 415, b"cannot read Content-Type"),
        (
            b"1,2,3,4",
            {"Content-Type": "text/csv", "Accept": "image/png"},
            406,
            b"cannot answer with Accept",
        ),
        (b"", {"Content-Type": "text/csv"}, 400, b"empty CSV body"),
        (b"\x00\xff garbage", {"Content-Type": "text/csv"}, 400, b"not UTF-8"),
        (b"[[1, 2], [3]]", {"Content-Type": "application/json"}, 400, b"row 2 has 1 value"),
        (
            b"1,2,3\n",
            {"Content-Type": "text/csv"},
            400,
            f"expected {N_FEATURES} features per row, got 3".encode(),
        ),
        (b"1,2,3,4\n1,2,3,-inf\n", {"Content-Type": "text/csv"}, 400, b"row 2 has infinity"),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    client: Client, body: bytes, headers: dict, status: int, reason: bytes
) -> None:
    got_status, _, got_body = client("POST", "/invocations", body, headers)
    assert got_status == status
    assert reason in got_body
    assert client("GET", "/ping")[0] == 200  # and the server is still healthy


def test_bodies_over_the_limit_are_413(service: ModelService) -> None:
    client = make_client(service, SETTINGS)
    row = b"5.1,3.5,1.4,0.2\n"
    body = row * (SETTINGS.max_payload_bytes // len(row) + 1)
    status, headers, reason = client("POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert status == 413
    assert headers["content-type"] == "text/plain; charset=utf-8"
    limit = SETTINGS.max_payload_bytes
    assert reason == f"request body is larger than the {limit} byte limit\n".encode()
    status, _, _ = client("POST", "/invocations", row * 1000, {"Content-Type": "text/csv"})
    assert status == 200
{%- if cookiecutter.__web == "fastapi" %}


def stalled_upload(service: ModelService) -> Response:
    """The app's answer to a request whose body never comes (the test client always sends a
    whole body, so the app is called directly, with a receive() that waits for ever)."""
    app = create_app(service, dataclasses.replace(SETTINGS, read_timeout=1))
    headers = [(b"content-type", b"text/csv"), (b"content-length", b"64")]
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {"path": "/invocations", "raw_path": b"/invocations", "root_path": ""}
    scope |= {"query_string": b"", "headers": headers, "server": ("test", 80), "client": None}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, *body = sent
    answer_headers = lower((name.decode(), value.decode()) for name, value in start["headers"])
    return start["status"], answer_headers, b"".join(part.get("body", b"") for part in body)
{%- else %}


class StalledStream(io.BytesIO):
    """A request body as gunicorn's worker reads it once the client has gone silent past
    its read timeout (see gunicorn_server.BoundedThreadWorker): 64 bytes, none readable."""

    def __init__(self) -> None:
        super().__init__(b"5.1,3.5,1.4,0.2\n" * 4)

    def read(self, size: int | None = -1) -> bytes:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def readinto(self, buffer: Any) -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")


def stalled_upload(service: ModelService) -> Response:
    """The app's answer to a request whose body stops arriving."""
    client = create_app(service, SETTINGS).test_client()
    headers = {"Content-Type": "text/csv"}
    response = client.post("/invocations", input_stream=StalledStream(), headers=headers)
    return response.status_code, lower(response.headers.items()), response.data
{%- endif %}


def test_a_body_that_stops_arriving_is_408(service: ModelService) -> None:
{%- if cookiecutter.__web == "fastapi" %}
    status, headers, reason = stalled_upload(service)
    assert headers["connection"] == "close"  # the rest of the body would be the next request
{%- else %}
    status, _, reason = stalled_upload(service)  # gunicorn closes the connection itself
{%- endif %}
    assert status == 408
    assert b"the request body stopped arriving" in reason
    assert make_client(service)("GET", "/ping")[0] == 200


def test_invocations_only_accepts_post(client: Client) -> None:
    assert client("GET", "/invocations")[0] == 405


def encoded(kind: str, rows: np.ndarray) -> bytes:
    """``rows`` as a request body of media type ``kind``."""
    if kind == codec.CSV:
        return "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
    if kind == codec.JSON:
        return json.dumps({"instances": rows.tolist()}).encode()
    if kind == codec.JSONLINES:
        return "".join(json.dumps(row) + "\n" for row in rows.tolist()).encode()
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return buffer.getvalue()


def decoded(kind: str, body: bytes) -> list[str]:
    """The predictions in a response body of media type ``kind``, as strings."""
    if kind == codec.CSV:
        values: list = body.decode().splitlines()
    elif kind == codec.JSON:
        values = json.loads(body)["predictions"]
    elif kind == codec.JSONLINES:
        values = [json.loads(line) for line in body.decode().splitlines()]
    else:
        values = np.load(io.BytesIO(body), allow_pickle=False).tolist()
    return [str(value) for value in values]


TYPES = [codec.CSV, codec.JSON, codec.JSONLINES, codec.NPY]


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize("accept", [None, "*/*", *TYPES])
def test_every_content_type_in_and_out(
    client: Client, service: ModelService, content_type: str, accept: str | None
) -> None:
    headers = {"Content-Type": content_type + "; charset=utf-8"}
    if accept:
        headers["Accept"] = accept
    body = encoded(content_type, REQUEST_ROWS)
    status, answer_headers, answer = client("POST", "/invocations", body, headers)
    assert status == 200, answer
    answer_type = content_type if accept in (None, "*/*") else accept
    assert codec.media_type(answer_headers["content-type"]) == answer_type
    assert decoded(answer_type, answer) == expected_labels(service, REQUEST_ROWS)


def test_the_sdks_jsonlines_spelling_is_read_and_answered_as_jsonlines(
    client: Client, service: ModelService
) -> None:
    """``application/x-jsonlines`` (the SageMaker SDK's spelling, which training channels
    read too) in and out; the answer says which type it is in the server's spelling."""
    spelling = "application/x-jsonlines"
    headers = {"Content-Type": spelling, "Accept": spelling}
    body = encoded(codec.JSONLINES, REQUEST_ROWS)
    status, answer_headers, answer = client("POST", "/invocations", body, headers)
    assert status == 200, answer
    assert answer_headers["content-type"].split(";")[0] == codec.JSONLINES
    assert decoded(codec.JSONLINES, answer) == expected_labels(service, REQUEST_ROWS)


@pytest.mark.parametrize("content_type", [codec.CSV, codec.JSONLINES])
def test_a_multi_record_batch_is_answered_line_for_line(
    client: Client, service: ModelService, content_type: str
) -> None:
    rows = np.tile(REQUEST_ROWS, (10_000 // len(REQUEST_ROWS) + 1, 1))[:10_000]
    body = encoded(content_type, rows)
    status, _, answer = client("POST", "/invocations", body, {"Content-Type": content_type})
    assert status == 200, answer[:200]
    assert decoded(content_type, answer) == expected_labels(service, rows)


def test_execution_parameters_default_to_one_transform_per_worker(service: ModelService) -> None:
    settings = ServerSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    status, headers, body = make_client(service, settings)("GET", "/execution-parameters")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_execution_parameters_follow_the_batch_variables(service: ModelService) -> None:
    settings = ServerSettings.from_env(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "8",
            "SAGEMAKER_BATCH_STRATEGY": "single_record",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        }
    )
    assert settings.max_payload_bytes == 20 * 1024 * 1024
    body = make_client(service, settings)("GET", "/execution-parameters")[2]
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 8,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 20,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("SAGEMAKER_BATCH_STRATEGY", "ALL_AT_ONCE"), ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "0")],
)
def test_bad_batch_variables_are_refused_naming_them(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        ServerSettings.from_env({name: value})


@pytest.fixture
def service_with_predict(
    trained: Paths, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Any, np.ndarray], np.ndarray]], ModelService]:
    """A loaded service whose ``model.predict`` is the function given."""

    def make(predict: Callable[[Any, np.ndarray], np.ndarray]) -> ModelService:
        monkeypatch.setattr(model, "predict", predict)
        service = ModelService(trained.model)
        service.load()
        return service

    return make


def test_custom_attributes_reach_predict_and_can_be_echoed(service_with_predict) -> None:
    original = model.predict
    seen: list[str | None] = []

    def echoing_predict(loaded: Any, features: np.ndarray) -> np.ndarray:
        seen.append(inference.custom_attributes())
        if inference.custom_attributes() is not None:
            inference.set_response_attributes(f"echo: {inference.custom_attributes()}")
        return original(loaded, features)

    client = make_client(service_with_predict(echoing_predict))
    body = SAMPLE_REQUEST.read_bytes()
    attributes = "trace-id=1-abc,tenant=7"
    status, headers, _ = client(
        "POST",
        "/invocations",
        body,
        {"Content-Type": "text/csv", inference.CUSTOM_ATTRIBUTES_HEADER: attributes},
    )
    assert status == 200
    assert headers[inference.CUSTOM_ATTRIBUTES_HEADER.lower()] == f"echo: {attributes}"
    status, headers, _ = client("POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert status == 200
    assert inference.CUSTOM_ATTRIBUTES_HEADER.lower() not in headers
    assert seen == [attributes, None]
    assert inference.custom_attributes() is None  # outside a request


def test_an_answer_has_no_custom_attributes_unless_predict_sets_them(client: Client) -> None:
    headers = {"Content-Type": "text/csv", inference.CUSTOM_ATTRIBUTES_HEADER: "a=1"}
    status, answer_headers, _ = client(
        "POST", "/invocations", SAMPLE_REQUEST.read_bytes(), headers
    )
    assert status == 200
    assert inference.CUSTOM_ATTRIBUTES_HEADER.lower() not in answer_headers


@pytest.fixture
def hanging_predict() -> Iterator[Callable[[Any, np.ndarray], np.ndarray]]:
    """A ``model.predict`` whose calls hang until the test is over (30 s at most)."""
    release = threading.Event()

    def predict(loaded: Any, features: np.ndarray) -> np.ndarray:
        release.wait(30)
        return np.zeros(len(features))

    yield predict
    release.set()


@pytest.fixture
def stuck_service(service_with_predict, hanging_predict) -> ModelService:
    """A loaded service whose predictions hang until the test is over."""
    return service_with_predict(hanging_predict)


def start_predicting(service: ModelService) -> None:
    threading.Thread(target=service.predict, args=(REQUEST_ROWS,), daemon=True).start()


def test_longest_prediction_is_the_age_of_the_oldest_one_running(
    stuck_service: ModelService, service: ModelService
) -> None:
    assert stuck_service.longest_prediction() == 0.0
    start_predicting(stuck_service)
    time.sleep(0.3)
    assert 0.3 <= stuck_service.longest_prediction() < 30
    service.predict(REQUEST_ROWS)
    assert service.longest_prediction() == 0.0  # finished predictions do not count


def test_a_prediction_stuck_for_twice_the_timeout_is_reported_once(
    stuck_service: ModelService,
) -> None:
    reported: list[float] = []
    watchdog = inference.watch_for_stuck_predictions(
        stuck_service, timeout=0.2, on_stuck=reported.append, interval=0.02
    )
    start_predicting(stuck_service)
    watchdog.join(timeout=10)
    assert not watchdog.is_alive()
    assert len(reported) == 1
    assert reported[0] > inference.STUCK_AFTER_TIMEOUTS * 0.2


def test_a_worker_with_a_stuck_prediction_exits_for_its_supervisor_to_replace() -> None:
    stopped = subprocess.run(
        [
            sys.executable,
            "-c",
            "from {{ cookiecutter.package_name }}.inference import stop_worker; stop_worker(125.0)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == inference.STUCK_EXIT_CODE
    # Not 3 or 4: uvicorn's and gunicorn's supervisors would stop instead of replacing it.
    assert stopped.returncode not in (3, 4)
    assert "a prediction has been running for 125 s" in stopped.stderr


def test_response_attributes_must_be_visible_ascii() -> None:
    with pytest.raises(RuntimeError, match="during a prediction"):
        inference.set_response_attributes("a=1")


@pytest.fixture
def request_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], list[dict[str, Any]]]:
    """The request log lines written so far, parsed (DEBUG included: /ping is DEBUG)."""
    logger = logging.getLogger(access_log.__name__)
    monkeypatch.setattr(logger, "propagate", True)  # configure_logging() turns it off
    caplog.set_level(logging.DEBUG, logger=logger.name)
    return lambda: [json.loads(r.getMessage()) for r in caplog.records if r.name == logger.name]


def test_each_request_is_one_json_log_line(client: Client, request_log) -> None:
    body = SAMPLE_REQUEST.read_bytes()
    client("POST", "/invocations", body, {"Content-Type": "text/csv", "Accept": "*/*"})
    client("GET", "/ping")
    client("POST", "/invocations", b"1,2", {"Content-Type": "text/csv"})
    invocation, ping, bad = request_log()
    assert invocation["method"] == "POST"
    assert invocation["path"] == "/invocations"
    assert invocation["status"] == 200
    assert invocation["level"] == "INFO"
    assert invocation["bytes_in"] == len(body)
    assert invocation["bytes_out"] > 0
    assert invocation["content_type"] == "text/csv"
    assert invocation["accept"] == "*/*"
    assert 0 < invocation["latency_ms"] < 60_000
    assert "error" not in invocation
    assert (ping["path"], ping["status"], ping["level"]) == ("/ping", 200, "DEBUG")
    assert (bad["status"], bad["level"]) == (400, "INFO")
    assert bad["error"] == f"expected {N_FEATURES} features per row, got 2"  # the reason


def test_unexpected_errors_are_500_and_logged_with_the_traceback(
    service_with_predict, request_log
) -> None:
    def broken_predict(loaded: Any, features: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model is broken")

    client = make_client(service_with_predict(broken_predict))
    status, _, body = client(
        "POST", "/invocations", SAMPLE_REQUEST.read_bytes(), {"Content-Type": "text/csv"}
    )
    assert status == 500
    assert b"RuntimeError" in body
    (line,) = request_log()
    assert (line["status"], line["level"]) == (500, "ERROR")
    assert "Traceback" in line["error"]
    assert "RuntimeError: the model is broken" in line["error"]
    assert client("GET", "/ping")[0] == 200


OPENAPI: dict[str, Any] = json.loads((PROJECT / "openapi.json").read_text())
INVOCATIONS = OPENAPI["paths"]["/invocations"]["post"]


def served_endpoints(app: Any) -> set[tuple[str, str]]:
    """(path, method) of every endpoint the app serves."""
{%- if cookiecutter.__web == "fastapi" %}
    from fastapi.routing import APIRoute

    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD", "OPTIONS"}
    }
{%- else %}
    return {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
{%- endif %}


def test_openapi_documents_exactly_the_endpoints_the_app_serves(service: ModelService) -> None:
    documented = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert documented == served_endpoints(create_app(service, SETTINGS))


def test_openapi_request_and_response_types_are_the_codecs() -> None:
    assert set(INVOCATIONS["requestBody"]["content"]) == set(codec.DECODERS)
    assert set(INVOCATIONS["responses"]["200"]["content"]) == set(codec.ENCODERS)
    parameters = {p.get("name") for p in INVOCATIONS["parameters"] if "name" in p}
    referenced = {p["$ref"].rsplit("/", 1)[1] for p in INVOCATIONS["parameters"] if "$ref" in p}
    names = parameters | {OPENAPI["components"]["parameters"][r]["name"] for r in referenced}
    assert inference.CUSTOM_ATTRIBUTES_HEADER in names


def documented_examples() -> list[tuple[str, str, bytes]]:
    """(content type, example name, body) for every request example in openapi.json."""
    examples = []
    for kind, content in INVOCATIONS["requestBody"]["content"].items():
        for name, example in content.get("examples", {}).items():
            value = example["value"]
            body = value.encode() if isinstance(value, str) else json.dumps(value).encode()
            examples.append((kind, name, body))
    return examples


@pytest.mark.parametrize(
    ("content_type", "body"),
    [pytest.param(kind, body, id=f"{kind}-{name}") for kind, name, body in documented_examples()],
)
def test_every_documented_request_example_is_answered(
    client: Client, content_type: str, body: bytes
) -> None:
    status, headers, answer = client("POST", "/invocations", body, {"Content-Type": content_type})
    assert status == 200, answer
    assert decoded(codec.media_type(headers["content-type"]), answer)


@pytest.mark.parametrize("kind", list(INVOCATIONS["responses"]["200"]["content"]))
def test_every_documented_response_type_is_produced(client: Client, kind: str) -> None:
    body = encoded(codec.NPY, REQUEST_ROWS)
    headers = {"Content-Type": codec.NPY, "Accept": kind}
    status, answer_headers, answer = client("POST", "/invocations", body, headers)
    assert status == 200, answer
    assert codec.media_type(answer_headers["content-type"]) == kind
    assert len(decoded(kind, answer)) == len(REQUEST_ROWS)


def documented_statuses() -> list[tuple[str, str, int]]:
    return [
        (path, method, int(status))
        for path, item in OPENAPI["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    ]


@pytest.mark.parametrize(("path", "method", "status"), documented_statuses())
def test_every_documented_status_is_reachable(
    path: str,
    method: str,
    status: int,
    service: ModelService,
    trained: Paths,
    service_with_predict,
    hanging_predict,
) -> None:
    csv = {"Content-Type": "text/csv"}
    sample = SAMPLE_REQUEST.read_bytes()
    requests: dict[tuple[str, str, int], Callable[[], Response]] = {
        ("/ping", "get", 200): lambda: make_client(service)("GET", path),
        ("/ping", "get", 503): lambda: make_client(ModelService(trained.model))("GET", path),
        ("/execution-parameters", "get", 200): lambda: make_client(service)("GET", path),
        ("/invocations", "post", 200): lambda: make_client(service)("POST", path, sample, csv),
        ("/invocations", "post", 400): lambda: make_client(service)("POST", path, b"x\n1", csv),
        ("/invocations", "post", 406): lambda: make_client(service)(
            "POST", path, sample, {**csv, "Accept": "image/png"}
        ),
        ("/invocations", "post", 408): lambda: stalled_upload(service),
        ("/invocations", "post", 413): lambda: make_client(service)(
            "POST", path, sample * (SETTINGS.max_payload_bytes // len(sample) + 1), csv
        ),
        ("/invocations", "post", 415): lambda: make_client(service)(
            "POST", path, sample, {"Content-Type": "application/xml"}
        ),
        ("/invocations", "post", 503): lambda: make_client(ModelService(trained.model))(
            "POST", path, sample, csv
        ),
        ("/invocations", "post", 504): lambda: make_client(
            service_with_predict(hanging_predict), dataclasses.replace(SETTINGS, timeout=1)
        )("POST", path, sample, csv),
    }
    assert (path, method, status) in requests, "the test knows no request that gets this status"
    assert requests[path, method, status]()[0] == status
