import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.codec import (
    CSV,
    JSON,
    CodecError,
    NotAcceptable,
    UnsupportedMediaType,
    decode,
    encode,
    media_type,
    negotiate,
)

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]])


@pytest.mark.parametrize(
    "body",
    [
        b"5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n",
        b"5.1,3.5,1.4,0.2\r\n6.3,3.3,6.0,2.5",  # CRLF, no final newline
        b"a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n",  # header row
        b'"5.1","3.5","1.4","0.2"\n"6.3","3.3","6.0","2.5"\n',  # quoted fields
        b"\xef\xbb\xbf5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n",  # UTF-8 byte order mark
    ],
)
def test_csv_bodies(body: bytes) -> None:
    np.testing.assert_array_equal(decode(body, "text/csv"), ROWS)


@pytest.mark.parametrize(
    "document",
    [
        ROWS.tolist(),
        {"instances": ROWS.tolist()},
        {"inputs": ROWS.tolist()},
    ],
)
def test_json_bodies(document: object) -> None:
    np.testing.assert_array_equal(decode(json.dumps(document).encode(), JSON), ROWS)


def test_a_single_json_row_is_one_row() -> None:
    assert decode(b"[5.1, 3.5, 1.4, 0.2]", JSON).shape == (1, 4)


def test_content_type_parameters_and_case_are_ignored() -> None:
    np.testing.assert_array_equal(decode(b"5.1,3.5,1.4,0.2", "Text/CSV; charset=utf-8"), ROWS[:1])


def test_missing_content_type_is_read_as_csv() -> None:
    np.testing.assert_array_equal(decode(b"5.1,3.5,1.4,0.2", None), ROWS[:1])


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", CSV, "empty CSV body"),
        (b"  \n", CSV, "empty CSV body"),
        (b"1,2\n3\n", CSV, "could not read the CSV body"),
        (b"1,x,3\n", CSV, "could not read the CSV body"),
        (b"\xff\xfe", CSV, "not UTF-8"),
        (b"a,b\n", CSV, "header but no rows"),
        (b"{", JSON, "not valid JSON"),
        (b'{"rows": []}', JSON, '"instances" or "inputs"'),
        (b"[[1, 2], [3]]", JSON, "same length"),
        (b'[["a", "b"]]', JSON, "rows of numbers"),
        (b"[]", JSON, "non-empty"),
        (b"[[[1]]]", JSON, "shape"),
        (b"3", JSON, "shape"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as info:
        decode(body, content_type)
    assert info.value.status == 400


def test_unsupported_content_type_is_415() -> None:
    with pytest.raises(UnsupportedMediaType, match="application/x-parquet") as info:
        decode(b"x", "application/x-parquet")
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, CSV),
        ("", CSV),
        ("*/*", CSV),
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        ("text/html, application/json;q=0.5", JSON),
        ("text/csv;q=0.2, application/json;q=0.9", JSON),
        ("application/*", JSON),
        ("text/*", CSV),
        ("image/png, */*;q=0.1", CSV),
    ],
)
def test_accept_negotiation(accept: str | None, expected: str) -> None:
    assert negotiate(accept, default=CSV) == expected


@pytest.mark.parametrize("accept", ["image/png", "text/csv;q=0", "application/xml, text/html"])
def test_unservable_accept_is_406(accept: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        negotiate(accept, default=CSV)
    assert info.value.status == 406


def test_encoders() -> None:
    labels = np.array(["setosa", "virginica"])
    assert encode(labels, CSV) == b"setosa\nvirginica\n"
    assert json.loads(encode(labels, JSON)) == {"predictions": ["setosa", "virginica"]}
    scores = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert encode(scores, CSV) == b"0.25,0.75\n1.0,0.0\n"


def test_media_type() -> None:
    assert media_type(" Application/JSON ; charset=UTF-8") == JSON
    assert media_type(None) == ""
