import csv
import io
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.codec import (
    CSV,
    DECODERS,
    JSON,
    JSONLINES,
    NPY,
    CodecError,
    NotAcceptable,
    UnsupportedMediaType,
    decode,
    encode,
    is_header,
    is_number,
    media_type,
    negotiate,
)

from .support import npy

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
        # pandas' to_json(orient="records"): features in the order of the first record's keys
        [dict(zip("abcd", row, strict=True)) for row in ROWS.tolist()],
        [dict(zip("abcd", ROWS[0], strict=True)), dict(zip("dcba", ROWS[1][::-1], strict=True))],
        {"instances": [dict(zip("abcd", row, strict=True)) for row in ROWS.tolist()]},
        # pandas' to_json(orient="split"), with or without the index
        {"columns": list("abcd"), "data": ROWS.tolist()},
        {"columns": list("abcd"), "index": [7, 8], "data": ROWS.tolist()},
        # MLflow's scoring server
        {"dataframe_split": {"columns": list("abcd"), "data": ROWS.tolist()}},
        {"dataframe_records": [dict(zip("abcd", row, strict=True)) for row in ROWS.tolist()]},
        # SageMaker's built-in algorithms
        {"instances": [{"features": row} for row in ROWS.tolist()]},
    ],
)
def test_json_bodies(document: object) -> None:
    np.testing.assert_array_equal(decode(json.dumps(document).encode(), JSON), ROWS)


@pytest.mark.parametrize(
    "body",
    [
        b"[5.1, 3.5, 1.4, 0.2]\n[6.3, 3.3, 6.0, 2.5]\n",
        b'{"features": [5.1, 3.5, 1.4, 0.2]}\r\n{"features": [6.3, 3.3, 6.0, 2.5]}',
        b"[5.1, 3.5, 1.4, 0.2]\n\n[6.3, 3.3, 6.0, 2.5]\n\n",  # blank lines are skipped
    ],
)
def test_jsonlines_bodies(body: bytes) -> None:
    np.testing.assert_array_equal(decode(body, JSONLINES), ROWS)


def test_npy_bodies() -> None:
    np.testing.assert_array_equal(decode(npy(ROWS), NPY), ROWS)
    np.testing.assert_array_equal(decode(npy(ROWS.astype(np.float32)), NPY), ROWS.astype("f4"))
    assert decode(npy(ROWS[0]), NPY).shape == (1, 4)  # one row
    assert decode(npy(np.array([[1, 2], [3, 4]])), NPY).dtype == np.float64


def test_a_batch_of_many_lines_is_answered_line_for_line() -> None:
    rows = np.arange(40_000, dtype=np.float64).reshape(10_000, 4)
    csv = "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows.tolist()).encode()
    np.testing.assert_array_equal(decode(csv, CSV), rows)
    lines = "".join(json.dumps(row) + "\n" for row in rows.tolist()).encode()
    np.testing.assert_array_equal(decode(lines, JSONLINES), rows)
    assert encode(rows[:, 0], CSV).decode().splitlines() == [str(v) for v in rows[:, 0]]
    assert len(encode(rows[:, 0], JSONLINES).splitlines()) == 10_000


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
        (b"1,2\n3\n", CSV, "row 2 has 1 value where row 1 has 2"),
        (b"1,x,3\n", CSV, "row 1, column 2: 'x' is not a number"),
        (b"\xff\xfe", CSV, "not UTF-8"),
        (b"a,b\n", CSV, "header but no rows"),
        (b"{", JSON, "not valid JSON"),
        (b'{"rows": []}', JSON, '"instances", "inputs", "columns" and "data"'),
        (b'{"instances": {"instances": [[1, 2]]}}', JSON, "rows of numbers"),
        (b'{"dataframe_split": [[1, 2]]}', JSON, '"dataframe_split" must be an object'),
        (b'{"dataframe_split": {"data": [[1, 2]]}}', JSON, '"dataframe_split" must be an object'),
        (b'{"dataframe_records": [{"a": 1}, {"b": 2}]}', JSON, "record 2"),
        (b'{"instances": [{"features": [1, 2]}, {"features": [3]}]}', JSON, "row 2 has 1 value"),
        # Within json.loads' depth on some Pythons: the decoder itself must not recurse.
        (b'{"instances": ' * 1000 + b"[[1, 2]]" + b"}" * 1000, JSON, "numbers|too deeply"),
        (b'[["a", "b"]]', JSON, "row 1, column 1: 'a' is not a number"),
        (b"[]", JSON, "non-empty"),
        (b"[[[1]]]", JSON, "shape"),
        (b"3", JSON, "shape"),
        (b'{"instances": 3}', JSON, "shape"),
        (b"[[" + b"1" * 400 + b"]]", JSON, "row 1, column 1: an integer of 400 digits is too"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, "nested too deeply"),
        (b'[{"a": 1, "b": 2}, {"a": 3}]', JSON, "record 2"),
        (b'[{"a": 1}, [2]]', JSON, "record 2"),
        (b'{"columns": ["a", "b"], "data": [[1, 2], [3]]}', JSON, "row 2"),
        (b'{"columns": "a", "data": [[1]]}', JSON, "must both be lists"),
        (b"", JSONLINES, "empty JSON lines"),
        (b"[1, 2]\n[3, 4", JSONLINES, "line 2 is not valid JSON"),
        (b"[1, 2]\n3\n", JSONLINES, "line 2: expected a list"),
        (b'{"x": [1]}', JSONLINES, "features"),
        (b"[1, 2] [3, 4]\n[5, 6]", JSONLINES, "line 1 is not valid JSON"),
        (b"", NPY, "not a .npy array"),
        (b"garbage bytes", NPY, "not a .npy array"),
        (npy(np.array(["a", "b"])), NPY, "dtype <U1"),
        (npy(np.array(5.0)), NPY, "shape"),
        (npy(np.zeros((2, 2, 2))), NPY, "shape"),
    ],
)
def test_bad_bodies_are_400_with_a_reason(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as info:
        decode(body, content_type)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        # CSV: rows of features from 1 (a header row and blank lines are not rows), columns
        # from 1; NumPy itself says "row 0, column 2" for this first case.
        (b"5.1,,1.4,0.2\n", CSV, "row 1, column 2: '' is not a number"),
        # ...and the line of the body, when it is another number.
        (b"a,b,c,d\n5.1,3.5,1.4,0.2\n\n6.3,x,6.0,2.5\n", CSV, r"row 2 \(line 4\), column 2: 'x'"),
        (b'"5.1","3.5","1.4",""\n', CSV, "row 1, column 4: '' is not a number"),
        (b"1_000,2\n", CSV, "row 1, column 1: '1_000' is not a number"),
        # A first row of missing values is data, never a header (the header rule).
        (b"NA,NA\n1,2\n", CSV, r"row 1, column 1: 'NA' is not a number \(write nan for a"),
        (b"1,2\nnull,4\n", CSV, r"row 2, column 1: 'null' is not a number \(write nan"),
        (b"1,2\n3,\n", CSV, "row 2, column 2: '' is not a number$"),
        # JSON features are JSON numbers: NumPy would read true as 1.0 and "2" as 2.0.
        (b"[[1, true]]", JSON, r"row 1, column 2: true is not a number \(a JSON boolean\)"),
        (b'[[1, 2], [3, "4"]]', JSON, r"row 2, column 2: '4' is not a number \(a JSON string\)"),
        (b'{"features": [1, false]}', JSONLINES, "line 1, column 2: false is not a number"),
        (npy(np.array([[True, False]])), NPY, "dtype bool"),
        # "#" starts no comment (NumPy's loadtxt would drop or cut the row, and batch
        # transform would join every later prediction to the wrong input line).
        (b"1,2\n#3,4\n5,6\n", CSV, "row 2, column 1: '#3' is not a number"),
        (b"1,2\n3,4 # note\n", CSV, "row 2, column 2: '4 # note' is not a number"),
        (b"#1,2\n", CSV, "row 1, column 1: '#1' is not a number"),
        # A ragged body: NumPy's own hint ("use `usecols`") makes no sense to a client.
        (b"1,2,3,4\n1,2,3\n", CSV, "row 2 has 3 values where row 1 has 4: every row needs"),
        (b"1,2\n3,4,5\n", CSV, "row 2 has 3 values where row 1 has 2"),
        # Bytes that are not UTF-8: the line, and the byte within it (a byte order mark too).
        (b"5.1,3.5\n1.4,\xff\n", CSV, r"byte 0xff at line 2, byte 5\)"),
        (b"\xef\xbb\xbf5.1,\xff", CSV, r"byte 0xff at line 1, byte 8\)"),
        # Binary data that is valid UTF-8: neither an empty body nor a header row.
        (b"\x0b\x0c\x1c\x1d\x1e\xc2\x85" * 8, CSV, r"not text \(byte 0x0b at line 1, byte 1\)"),
        (b"\x00" * 64, CSV, r"not text \(byte 0x00 at line 1, byte 1\)"),
        (b"1,2\n3,\x00\n", CSV, r"not text \(byte 0x00 at line 2, byte 3\)"),
        (b"\x1c\x1d\n\x1e", JSONLINES, r"not text \(byte 0x1c at line 1, byte 1\)"),
        # JSON: the row, and the position in the text where the parser gave up.
        (b"[[1, 2], [3, 4]", JSON, r"body is not valid JSON \(at column 16\)"),
        (b'{"instances":\n  [[1, 2],\n   [3 4]]}', JSON, r"\(at line 3, column 7\)"),
        (b"[[1, 2], [3]]", JSON, "row 2 has 1 value where row 1 has 2"),
        (b'[[1, 2], [3, "x"]]', JSON, "row 2, column 2: 'x' is not a number"),
        (b'[1, "x"]', JSON, "row 1, column 2: 'x' is not a number"),  # one row
        (b'{"columns": ["a", "b"], "data": [[1, 2], [3]]}', JSON, 'row 2 of "data"'),
        # Integers longer than Python converts (4,300 digits: sys.get_int_max_str_digits).
        (b"[[1, " + b"9" * 4301 + b"]]", JSON, r"integer of 4301 digits \(at column 6\)"),
        (b"{\n" + b'"instances": [[-' + b"1" * 5000 + b"]]}", JSON, r"\(at line 2, column 17\)"),
        (b"[1, 2]\n[3, " + b"4" * 4400 + b"]\n", JSONLINES, r"line 2 holds an integer of 4400"),
        # JSON lines: a line is a row, counted from 1.
        (b"[1, 2]\n[3, 4", JSONLINES, r"line 2 is not valid JSON \(at column 6\)"),
        (b"[1, 2]\n[3]\n", JSONLINES, "line 2 has 1 value where line 1 has 2"),
        (b'[1, 2]\n{"features": [3, "x"]}\n', JSONLINES, "line 2, column 2: 'x' is not"),
    ],
)
def test_reasons_count_rows_and_columns_from_1(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        decode(body, content_type)


# What NumPy, the json module and Python's codecs say in their own messages.
LIBRARY_WORDS = ("usecols", "float64", "row 0", "Expecting", "codec can't", "position", "(char ")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"1,2\n3\n", CSV),
        (b"5.1,,1.4,0.2\n", CSV),
        (b"1,2\n\xff", CSV),
        (b"[1, 2", JSON),
        (b"[1]\n[1, 2", JSONLINES),
        (b"\x93NUMPY garbage", NPY),
        (npy(ROWS)[:100], NPY),
    ],
)
def test_reasons_are_the_servers_own_words(body: bytes, content_type: str) -> None:
    with pytest.raises(CodecError) as info:
        decode(body, content_type)
    assert not [word for word in LIBRARY_WORDS if word in str(info.value)], str(info.value)


# The rule for feature values and headers (codec.py, "What a feature value is"), one table
# that serving (here) and training (test_channels.py) are both held to.
NUMBER_SYNTAX = [
    ("5.1", True),  # data/iris.csv
    ("-3", True),
    ("+.5e-3", True),  # C's and Python's float syntax
    ("1.", True),
    ("1E5", True),
    (" 2.5\t", True),  # spaces or tabs around a value: Excel and hand-written CSV
    ("nan", True),  # what NumPy writes for NaN, and pandas with na_rep="nan"
    ("NaN", True),  # Python's json, R's write.csv of NaN
    ("-inf", True),  # NumPy; refused later as infinity, but a number
    ("Infinity", True),  # Python's json
    ("", False),  # pandas' to_csv writes NaN as an empty field: write nan instead
    ("NA", False),  # R's write.csv of NA
    ("N/A", False),
    ("#N/A", False),  # Excel
    ("null", False),
    ("None", False),  # Python's str(None)
    ("1_000", False),  # Python's float() reads it as 1000
    ("0x10", False),
    ("\u0661", False),  # an Arabic-Indic 1: Python's float() reads it
    ("\u00a01", False),  # after a no-break space: NumPy takes it for a space
    ("1e", False),
    ("true", False),
    ("#1", False),  # "#" starts no comment
    ("1 2", False),
]
# A header is a first row of names: no field is a number or a missing value.
HEADER_RULE = [
    ("a,b,c,d", True),  # pandas' to_csv(index=False)
    ('"sepal length","sepal width","petal length","petal width"', True),  # csv.QUOTE_ALL
    ("#a,b,c,d", True),  # a commented header is names too
    ("NA,NA,NA,NA", False),  # R's write.csv of a row of missing values: data
    (",,,", False),  # pandas' to_csv of a row of NaN: data
    ("nan,nan,nan,nan", False),
    ("a,1,b,c", False),  # names and a number: data, refused
    ("0,1,2,3", False),  # pandas' default column names look like data, and are read as it
]
# A feature in JSON: a JSON number, NaN, Infinity or null (NaN); nothing else.
JSON_FEATURES = [
    ("1", True),
    ("-2.5e3", True),
    ("NaN", True),  # Python's json.dumps of NaN
    ("null", True),  # pandas' to_json and orjson of NaN: a missing value
    ("true", False),  # NumPy would read it as 1.0
    ("false", False),
    ('"1.5"', False),  # a number in a string: a column of text upstream
    ('"a"', False),
    ("[1]", False),
    ("{}", False),
]


@pytest.mark.parametrize(("field", "number"), NUMBER_SYNTAX)
def test_the_number_syntax(field: str, number: bool) -> None:
    assert is_number(field) == number
    body = f"9,{field}\n".encode()
    if number:
        np.testing.assert_array_equal(decode(body, CSV), [[9.0, float(field)]])
    else:
        with pytest.raises(CodecError, match=r"^row 1, column 2: .* is not a number"):
            decode(body, CSV)


@pytest.mark.parametrize(("row", "header"), HEADER_RULE)
def test_the_header_rule(row: str, header: bool) -> None:
    fields = next(csv.reader([row]))
    assert is_header(fields) == header
    body = f"{row}\n1,2,3,4\n".encode()
    if header:
        np.testing.assert_array_equal(decode(body, CSV), [[1.0, 2.0, 3.0, 4.0]])
    elif all(is_number(field) for field in fields):
        assert decode(body, CSV).shape == (2, 4)  # never a row less
    else:
        with pytest.raises(CodecError, match=r"^row 1, column \d: .* is not a number"):
            decode(body, CSV)


@pytest.mark.parametrize(("value", "feature"), JSON_FEATURES)
def test_json_features_are_json_numbers(value: str, feature: bool) -> None:
    for body, kind in [(f"[[1, {value}]]", JSON), (f"[1, 2]\n[3, {value}]\n", JSONLINES)]:
        if feature:
            assert decode(body.encode(), kind).shape[1] == 2
        else:
            with pytest.raises(CodecError, match=r"(row|line) \d, column 2: "):
                decode(body.encode(), kind)


def test_object_arrays_need_pickles_and_are_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(CodecError, match=r"not a \.npy array"):
        decode(buffer.getvalue(), NPY)


VALID_BODIES = {
    CSV: b"a,b,c,d\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n",
    JSON: json.dumps({"columns": list("abcd"), "data": ROWS.tolist()}).encode(),
    JSONLINES: b'[5.1, 3.5, 1.4, 0.2]\n{"features": [6.3, 3.3, 6.0, 2.5]}\n',
    NPY: npy(ROWS),
}


def mangled(body: bytes, rng: random.Random) -> list[bytes]:
    """Every truncation of ``body``, and random byte flips, insertions and deletions."""
    bodies = [body[:end] for end in range(len(body))]
    for _ in range(300):
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            action = rng.choice(("flip", "insert", "delete"))
            if action == "flip":
                data[at] = rng.randrange(256)
            elif action == "insert":
                data.insert(at, rng.randrange(256))
            elif len(data) > 1:
                del data[at]
        bodies.append(bytes(data))
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))) for _ in range(100)]
    return bodies


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_decoders_answer_any_garbage_with_a_codec_error(kind: str) -> None:
    """Fuzzed bodies give rows of numbers or a CodecError (a 400), never anything else."""
    assert sorted(VALID_BODIES) == sorted(DECODERS)
    refused: list[CodecError] = []
    for body in mangled(VALID_BODIES[kind], random.Random(kind)):  # noqa: S311 (not crypto)
        try:
            rows = decode(body, kind)
        except CodecError as exc:
            refused.append(exc)
            continue
        assert rows.ndim == 2
        assert rows.size > 0
        assert rows.dtype.kind == "f"
    assert refused
    assert all(exc.status == 400 and str(exc) for exc in refused)


def decoded(body: bytes, kind: str) -> np.ndarray | CodecError:
    """The rows ``body`` decodes to, or the CodecError that refuses it; anything else raises."""
    try:
        return decode(body, kind)
    except CodecError as exc:
        return exc


def assert_rows_or_a_400(result: np.ndarray | CodecError) -> None:
    if isinstance(result, CodecError):
        assert result.status == 400
        assert str(result)
    else:
        assert result.ndim == 2
        assert result.size > 0
        assert result.dtype == np.float64


# Any JSON document: numbers of every size, booleans, strings, null, nested lists and
# objects under the keys read; "#" stands for an integer of up to 6,000 digits (Python
# converts 4,300 at most: sys.get_int_max_str_digits).
JSON_DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.just("#") | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["instances", "inputs", "columns", "data", "features", "a"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_DOCUMENTS, st.integers(1, 6000))
def test_any_json_document_is_rows_or_a_400(document: object, digits: int) -> None:
    """As JSON and, when a list, as JSON lines: rows of floats, or a CodecError (a 400)."""
    bodies = {JSON: json.dumps(document)}
    if isinstance(document, list) and document:
        bodies[JSONLINES] = "\n".join(json.dumps(line) for line in document)
    for kind, body in bodies.items():
        assert_rows_or_a_400(decoded(body.replace('"#"', "9" * digits).encode(), kind))


CSV_FIELDS = st.sampled_from([field for field, _ in NUMBER_SYNTAX] + ["a", '"1"', "# 1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CSV_FIELDS, min_size=1, max_size=3), min_size=1, max_size=5))
def test_csv_rows_are_read_whole_or_refused(rows: list[list[str]]) -> None:
    """Never a row dropped or cut: every line but a blank one is a row (the header rule
    aside), its values those of the number syntax, or the body is a 400."""
    lines = [",".join(row) for row in rows]
    result = decoded("\n".join(lines).encode(), CSV)
    assert_rows_or_a_400(result)
    if isinstance(result, CodecError):
        return
    fields = list(csv.reader(line for line in lines if line))
    if is_header(fields[0]):
        fields = fields[1:]
    assert all(is_number(field) for row in fields for field in row)
    np.testing.assert_array_equal(result, [[float(field) for field in row] for row in fields])


NPY_DTYPES = ["f2", "f4", ">f8", "f16", "i1", ">i8", "u8", "?", "c8", "U3", "S3", "M8[s]", "V4"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NPY_DTYPES), st.lists(st.integers(0, 3), max_size=4), st.booleans())
def test_any_npy_array_is_rows_or_a_400(dtype: str, shape: list, fortran: bool) -> None:
    """numpy.save of any dtype, shape and order: rows of floats, or a CodecError (a 400)."""
    array = np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    assert_rows_or_a_400(decoded(npy(array), NPY))


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
        ("application/jsonlines", JSONLINES),
        ("application/x-npy", NPY),
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


def test_json_beyond_strict_json_is_still_read() -> None:
    """NaN, Infinity (what Python's json.dumps writes for them) and integers beyond 64 bits:
    orjson refuses them, the json module reads them."""
    document = b'{"instances": [[NaN, Infinity, 123456789012345678901234567890, 1]]}'
    row = decode(document, JSON)[0]
    assert np.isnan(row[0])
    assert row[1:].tolist() == [np.inf, 1.2345678901234568e29, 1.0]
    lines = decode(b"[NaN, 1]\n[2, -Infinity]\n", JSONLINES)
    assert np.isnan(lines[0, 0])
    assert lines[1].tolist() == [2.0, -np.inf]


def test_encoders() -> None:
    labels = np.array(["setosa", "virginica"])
    assert encode(labels, CSV) == b"setosa\nvirginica\n"
    assert json.loads(encode(labels, JSON)) == {"predictions": ["setosa", "virginica"]}
    assert encode(labels, JSONLINES) == b'"setosa"\n"virginica"\n'
    assert np.load(io.BytesIO(encode(labels, NPY)), allow_pickle=False).tolist() == [
        "setosa",
        "virginica",
    ]
    scores = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert encode(scores, CSV) == b"0.25,0.75\n1.0,0.0\n"
    assert encode(scores, JSONLINES) == b"[0.25, 0.75]\n[1.0, 0.0]\n"
    np.testing.assert_array_equal(np.load(io.BytesIO(encode(scores, NPY))), scores)


@pytest.mark.parametrize("odd", ["a,b", 'say "hi"', "two\nlines", ""])
def test_csv_labels_that_need_quotes_are_quoted(odd: str) -> None:
    labels = np.array(["plain", odd, "plain"], dtype=object)
    encoded = encode(labels, CSV).decode()
    assert [row for (row,) in csv.reader(io.StringIO(encoded, newline=""))] == labels.tolist()
    assert encoded.startswith("plain\n")
    assert encoded.endswith("\nplain\n")


def test_csv_of_plain_labels_and_numbers_is_one_per_line() -> None:
    assert encode(np.array(["setosa", "virginica"]), CSV) == b"setosa\nvirginica\n"
    assert encode(np.array([1, 2]), CSV) == b"1\n2\n"
    assert encode(np.array([0.5, 1e-20]), CSV) == b"0.5\n1e-20\n"
    assert encode(np.array([], dtype=str), CSV) == b""
    mixed = np.array(["setosa", 2, 0.5], dtype=object)
    assert encode(mixed, CSV) == b"setosa\n2\n0.5\n"


@pytest.mark.parametrize(
    "values",
    [
        np.array(["setosa", 'say "hi"', "two\nlines", "a, b", "", "é ✓"], dtype=object),
        np.array(["setosa", "virginica"]),
        np.array([0.5, -1e-20, np.nan, np.inf]),
        np.array([1, 2]),
        np.array([True, False]),
        np.array([[0.25, 0.75], [1.0, 0.0]]),
        np.array([], dtype=str),
    ],
    ids=["object-str", "str", "float", "int", "bool", "2-D", "empty"],
)
def test_json_and_jsonlines_write_each_value_as_json_dumps_does(values: np.ndarray) -> None:
    items = values.tolist()
    assert encode(values, JSON) == json.dumps({"predictions": items}).encode()
    expected = "".join(json.dumps(item) + "\n" for item in items) or "\n"
    assert encode(values, JSONLINES) == expected.encode()


def test_numpy_scalars_in_an_object_array_are_written_as_numbers() -> None:
    values = np.array([np.int64(1), np.float32(0.5)], dtype=object)
    assert json.loads(encode(values, JSON)) == {"predictions": [1.0, 0.5]}
    assert encode(values, JSONLINES) == b"1.0\n0.5\n"


def test_object_predictions_are_encoded_without_pickles() -> None:
    labels = np.array(["setosa", "virginica"], dtype=object)  # what scikit-learn returns
    decoded = np.load(io.BytesIO(encode(labels, NPY)), allow_pickle=False)
    assert decoded.tolist() == ["setosa", "virginica"]


def test_media_type() -> None:
    assert media_type(" Application/JSON ; charset=UTF-8") == JSON
    assert media_type(None) == ""


# Spellings other than ours, each with who uses it; a request may use any of them, in
# Content-Type or Accept, as a training channel's ContentType may (test_channels.py).
SPELLINGS = [
    ("application/x-jsonlines", JSONLINES),  # the SageMaker SDK's JSONLinesSerializer docs
    ("application/jsonl", JSONLINES),  # the .jsonl suffix, as a media type
    ("application/json-lines", JSONLINES),  # jsonlines.org's other spelling
    ("text/x-csv", CSV),  # older browsers and clients
    ("application/csv", CSV),  # some HTTP clients
    ("application/npy", NPY),  # without the x- prefix
]


@pytest.mark.parametrize(("spelling", "kind"), SPELLINGS)
def test_other_spellings_of_a_type_are_read_and_answered(spelling: str, kind: str) -> None:
    body = encode(ROWS, kind)
    assert media_type(f"{spelling.upper()}; charset=utf-8") == kind
    assert decode(body, spelling).tolist() == ROWS.tolist()
    assert negotiate(spelling, JSON) == kind
