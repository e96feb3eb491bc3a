"""The web app in-process: status codes, content negotiation and limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.environment import ServerSettings
from {{ cookiecutter.package_name }}.inference import ModelService

from .support import N_FEATURES, SAMPLE_REQUEST, lower

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
        (b"[[1, 2], [3]]", {"Content-Type": "application/json"}, 400, b"same length"),
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
    status, _, _ = client("POST", "/invocations", body, {"Content-Type": "text/csv"})
    assert status == 413
    status, _, _ = client("POST", "/invocations", row * 1000, {"Content-Type": "text/csv"})
    assert status == 200


def test_invocations_only_accepts_post(client: Client) -> None:
    assert client("GET", "/invocations")[0] == 405
