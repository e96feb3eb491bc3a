"""Request decoding and response encoding, chosen by ``Content-Type`` and ``Accept``.

In, one row of features per record:

- ``text/csv``: one row per line (every line but a blank one; ``#`` starts no comment), an
  optional header row (``is_header``), quoted fields;
- ``application/json``: ``{"instances": rows}``, ``{"inputs": rows}``, a list of rows, one
  row, or a pandas-style data frame without pandas: ``records`` (``[{"a": 1, "b": 2}, ...]``,
  features in the order of the first record's keys, every record with the same keys) or
  ``split`` (``{"columns": [...], "data": rows}``, an ``"index"`` is ignored); MLflow's
  ``{"dataframe_split": split}`` and ``{"dataframe_records": records}``; and the records
  of SageMaker's built-in algorithms, ``{"instances": [{"features": [...]}, ...]}``;
- ``application/jsonlines``: one row per line, a list of numbers or ``{"features": [...]}``;
  ``application/x-jsonlines`` and the other spellings of ``ALIASES`` mean the same, in
  requests as in training channels;
- ``application/x-npy``: a NumPy ``.npy`` array (no pickles), 2-D, or 1-D for one row.

Out: the same four types. A request without ``Content-Type`` is read as CSV; an ``Accept``
that is missing or ``*/*`` gets the request's own type back, so batch transform output lines
up with its input. Anything that cannot be read raises ``CodecError`` (a 400) with a reason,
values that are not numbers by the rule below (``NUMBER``, ``is_json_number``) included.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
PARQUET = "application/x-parquet"  # Training channels only.
LIBSVM = "text/libsvm"  # Training channels only.
# Other spellings seen in SageMaker jobs, the SDK and clients, and what they mean here: the
# same in a request's Content-Type or Accept as in a training channel's ContentType.
ALIASES = {
    "csv": CSV,
    "text/x-csv": CSV,
    "application/csv": CSV,
    "application/json-lines": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "jsonl": JSONLINES,
    "jsonlines": JSONLINES,
    "application/npy": NPY,
    "parquet": PARQUET,
    "application/parquet": PARQUET,
    "application/vnd.apache.parquet": PARQUET,
    "libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "application/x-libsvm": LIBSVM,
}


class CodecError(ValueError):
    """A request that cannot be read or answered as asked; ``status`` is the HTTP status."""

    status = 400


class UnsupportedMediaType(CodecError):
    status = 415


class NotAcceptable(CodecError):
    status = 406


def media_type(header: str | None) -> str:
    """``"Text/CSV; charset=utf-8"`` -> ``"text/csv"``, other spellings to the one used
    here (``ALIASES``: ``application/x-jsonlines`` -> ``application/jsonlines``); ``""``
    for a missing header."""
    base = (header or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    start = 0
    try:
        body.decode("utf-8")  # Positions counted from the first byte, a byte order mark too.
    except UnicodeDecodeError as exc:
        start = exc.start
    raise CodecError(f"body is not UTF-8 text ({_byte_at(body, start)})")


def _byte_at(data: bytes | str, start: int) -> str:
    """``byte 0xff at line 2, byte 5`` for the byte (or character) at ``start``."""
    line = data.count(b"\n" if isinstance(data, bytes) else "\n", 0, start) + 1
    column = start - data.rfind(b"\n" if isinstance(data, bytes) else "\n", 0, start)
    code = data[start] if isinstance(data, bytes) else ord(data[start])
    return f"byte 0x{code:02x} at line {line}, byte {column}"


# Characters no text body holds (tab, newline and carriage return are fine): binary data
# that happens to be valid UTF-8.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# The bytes of plain ASCII text: printable characters, tab, newline and carriage return.
_PLAIN_TEXT = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _refuse_binary(text: str) -> None:
    """Called where a body is refused anyway: binary data gets that reason, not another."""
    found = _CONTROL.search(text)
    if found:
        raise CodecError(f"body is not text ({_byte_at(text, found.start())})")


# What a feature value is, and what a header is: one rule for serving (this module) and
# training (channels.py imports these), tested against one table (tests/test_codec.py).
#
# - A number in text (a CSV field, a LibSVM value) is an optional sign, then digits with an
#   optional point and exponent, or nan, inf or infinity in any case; spaces or tabs around
#   it are fine. ASCII only, nothing else: not an empty field, not NA, N/A, null or None
#   (write nan for a missing value), not 1_000, 0x10 or digits of other scripts, though
#   Python's float() or NumPy read some of these.
# - A number in JSON is a JSON number (NaN and Infinity too, as Python's json writes them),
#   or null for a missing value (read as NaN: what pandas and orjson write for NaN); never
#   true or false, never a string, not even "1.5".
# - A CSV header is a first row of names: no field of it is a number or one of MISSING.
#   Training looks at the features only (a label may be text). So a first row of NA values
#   is read, and refused as not numbers, never skipped as a header; a first row that mixes
#   names and numbers is read as data, and refused.
NUMBER = re.compile(
    r"[ \t]*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)[ \t]*",
    re.IGNORECASE | re.ASCII,
)
# How R, pandas and spreadsheets write a missing value (nan is a number already): values,
# never the name of a column.
MISSING = frozenset({"", "na", "n/a", "#n/a", "null", "none", "<na>"})
JSON_NUMBER_TYPES = frozenset({int, float, type(None)})  # bool is not int here: type() is


def is_number(field: str) -> bool:
    """A number in text, as the rule above spells it."""
    return NUMBER.fullmatch(field) is not None


def is_header(fields: Sequence[str]) -> bool:
    """A first row of names: none of ``fields`` is a number or a missing value."""
    return bool(fields) and not any(
        is_number(field) or field.strip().lower() in MISSING for field in fields
    )


def is_json_number(value: Any) -> bool:
    """A feature in JSON: a number, NaN, Infinity or null (NaN); not a boolean or string."""
    return type(value) in JSON_NUMBER_TYPES


def not_a_number(value: Any) -> str:
    """Why ``value`` (a text field or a JSON value) is no feature: ``'NA' is not a number
    (write nan for a missing value)``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} is not a number (a JSON boolean)"
    if isinstance(value, list | dict):
        return "expected a number, not a nested value"
    if not isinstance(value, str):
        return f"{value!r} is not a number"
    if value.strip() and value.strip().lower() in MISSING:  # '' says enough by itself
        return f"{value!r} is not a number (write nan for a missing value)"
    return f"{value!r} is not a number"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _fits_a_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:  # Beyond about 1.8e308
        return False
    return True


def _row_problem(
    rows: list[Any], noun: str, *, text: bool = False, lines: list[int] | None = None
) -> str | None:
    """Where ``rows`` (lists of fields: strings when ``text``, else JSON values) stop being a
    table of numbers, in 1-based rows and columns: a row of another width than the first,
    or a value that is not a number. ``lines``: each row's line, named when it differs."""

    def where(number: int) -> str:
        line = lines[number - 1] if lines else number
        return f"{noun} {number}" + (f" (line {line})" if line != number else "")

    width = len(rows[0]) if rows and isinstance(rows[0], list) else None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, list):
            return None
        if len(row) != width:
            return (
                f"{where(number)} has {_count(len(row), 'value')} where {noun} 1 has {width}:"
                f" every {noun} needs the same number of features"
            )
        for column, value in enumerate(row, 1):
            if not (is_number(value) if text else is_json_number(value)):
                if isinstance(value, str) and not text and is_number(value):
                    reason = f"{value!r} is not a number (a JSON string)"
                else:
                    reason = not_a_number(value)
                return f"{where(number)}, column {column}: {reason}"
            if isinstance(value, int) and not _fits_a_float(value):
                return (
                    f"{where(number)}, column {column}: an integer of"
                    f" {_count(len(str(abs(value))), 'digit')} is too large for a float"
                )
    return None


def _numbers_only(rows: list[Any], ndim: int) -> bool:
    """Every value of ``rows`` (a list of rows, or one row) is a JSON number or null."""
    values = itertools.chain.from_iterable(rows) if ndim == 2 else rows
    return set(map(type, values)) <= JSON_NUMBER_TYPES


def _matrix(rows: Any, what: str, noun: str = "row") -> np.ndarray:
    """``rows`` as a non-empty 2-D float array; one flat row becomes a one-row matrix.

    NumPy would read true as 1.0 and "1.5" as 1.5: values from JSON must be JSON numbers.
    """
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        matrix = None
    if isinstance(rows, list) and (
        matrix is None or (matrix.ndim in (1, 2) and not _numbers_only(rows, matrix.ndim))
    ):
        flat = not any(isinstance(row, list) for row in rows)  # one row
        problem = _row_problem([rows] if flat else rows, noun)
        matrix = None if problem else matrix
    else:
        problem = None
    if matrix is None:
        raise CodecError(
            problem
            or f"expected {what} of numbers, all of the same length (for example [[1.0, 2.0]])"
        )
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.size == 0:
        raise CodecError(
            f"expected a non-empty list of rows, not an array of shape {matrix.shape}"
        )
    return matrix


def decode_csv(body: bytes) -> np.ndarray:
    """Rows of numbers, one per line: a header row (``is_header``) is skipped, blank lines
    are no rows, and any other line is a row or a 400 naming it ("#" is no comment)."""
    text = _text(body)
    if not text.strip():
        _refuse_binary(text)
        raise CodecError("empty CSV body: send one row of features per line")
    if body.translate(None, _PLAIN_TEXT):  # A byte scan: a regex over the text is 10x slower
        _refuse_binary(text)  # NumPy would take some control characters for spaces.
    content = text.lstrip("\r\n")  # Leading blank lines; a first field keeps its spaces.
    skipped = text.count("\n", 0, len(text) - len(content))
    first_line, _, rest = content.partition("\n")
    try:
        header = is_header(next(csv.reader([first_line])))
    except csv.Error:
        header = False
    if header and not rest.strip():
        raise CodecError("the CSV body has a header but no rows")
    if not (rest if header else content).isascii():  # NumPy would take U+00A0 for a space.
        raise CodecError(_csv_problem(content, header, skipped))
    try:
        rows = np.loadtxt(
            io.StringIO(content),
            delimiter=",",
            dtype=np.float64,
            ndmin=2,
            quotechar='"',
            comments=None,  # NumPy's default, "#", would drop or cut rows: "#" is no comment
            skiprows=1 if header else 0,
        )
    except ValueError:
        raise CodecError(_csv_problem(content, header, skipped)) from None
    if rows.size == 0:
        raise CodecError("the CSV body has no values")
    return rows


def _csv_problem(content: str, header: bool, skipped: int) -> str:
    """What a CSV body holds that is not rows of numbers, in rows and columns counted from 1
    (the header row and blank lines not counted: row N is the Nth row of features), with the
    line of the body when it differs; ``skipped`` blank lines came before ``content``."""
    numbered = [
        (number, line.removesuffix("\r"))
        for number, line in enumerate(content.split("\n"), skipped + 1)
        if line.removesuffix("\r")
    ]
    if header:
        numbered = numbered[1:]
    try:
        rows = [
            [field.strip(" \t") for field in fields]
            for fields in csv.reader(line for _, line in numbered)
        ]
    except csv.Error:
        rows = []
    lines = [number for number, _ in numbered] if len(rows) == len(numbered) else None
    problem = _row_problem(rows, "row", text=True, lines=lines)
    return problem or "could not read the CSV body as rows of numbers separated by commas"


def _loads(text: str) -> Any:
    """orjson, three to four times faster, for strict JSON; the json module for what orjson
    refuses: it reads ``NaN`` and integers beyond 64 bits, and names what is wrong."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _parse_json(text: str, what: str) -> Any:
    try:
        return _loads(text)
    except json.JSONDecodeError as exc:
        raise CodecError(f"{what} is not valid JSON (at {_position(text, exc.pos)})") from None
    except RecursionError:
        raise CodecError(f"{what} is nested too deeply") from None
    except ValueError:  # An integer longer than Python converts (sys.get_int_max_str_digits).
        raise CodecError(_long_integer(text, what)) from None


def _position(text: str, at: int) -> str:
    """Where the character at ``at`` is, counted from 1: ``column 5`` in one-line text,
    ``line 2, column 5`` otherwise."""
    line = text.count("\n", 0, at) + 1
    column = at - text.rfind("\n", 0, at)
    return f"line {line}, column {column}" if "\n" in text else f"column {column}"


def _long_integer(text: str, what: str) -> str:
    """Python refuses to convert integers of more than ``sys.get_int_max_str_digits()``
    digits (4,300 by default): the reason names the first one."""
    limit = sys.get_int_max_str_digits()
    found = next((run for run in re.finditer(r"\d+", text) if len(run.group()) > limit), None)
    if not limit or found is None:
        return f"{what} is not valid JSON"
    return (
        f"{what} holds an integer of {len(found.group())} digits (at"
        f" {_position(text, found.start())}): more than the {limit} that can be read"
    )


def _records(records: list[dict[str, Any]]) -> list[Any]:
    """Data frame ``records``: features in the order of the first record's keys; or, when
    that one key is ``"features"``, each record's list of them."""
    columns = list(records[0])
    rows = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or record.keys() != set(columns):
            raise CodecError(f"record {number} does not have the first record's keys {columns}")
        rows.append([record[column] for column in columns])
    if columns == ["features"]:
        return [features for [features] in rows]
    return rows


def _is_split(document: Any) -> bool:
    return isinstance(document, dict) and {"columns", "data"} <= document.keys()


def _split(document: dict[str, Any]) -> Any:
    """Data frame ``split``: ``{"columns": [...], "data": rows, "index": [...]}``."""
    columns, data = document["columns"], document["data"]
    if not isinstance(columns, list) or not isinstance(data, list):
        raise CodecError('"columns" and "data" must both be lists')
    for number, row in enumerate(data, 1):
        if not isinstance(row, list) or len(row) != len(columns):
            raise CodecError(f'row {number} of "data" does not have {len(columns)} values')
    return data


def _listed_rows(document: Any) -> Any:
    """Rows, one row or records; anything else is left to ``_matrix`` to refuse."""
    if isinstance(document, list) and document and isinstance(document[0], dict):
        return _records(document)
    return document


def _rows(document: Any) -> Any:
    """The rows of a JSON request body, in any of the forms the module docstring lists."""
    if not isinstance(document, dict):
        return _listed_rows(document)
    if _is_split(document):
        return _split(document)
    for key in ("instances", "inputs", "dataframe_records"):
        if key in document:
            return _listed_rows(document[key])  # One level: no recursion to exhaust.
    if "dataframe_split" in document:
        if not _is_split(document["dataframe_split"]):
            raise CodecError('"dataframe_split" must be an object with "columns" and "data"')
        return _split(document["dataframe_split"])
    raise CodecError(
        'expected a list of rows, or an object with "instances", "inputs", "columns" and '
        '"data", "dataframe_split" or "dataframe_records"'
    )


def decode_json(body: bytes) -> np.ndarray:
    return _matrix(_rows(_parse_json(_text(body), "body")), "rows")


def _jsonlines_row(value: Any, number: int) -> Any:
    if isinstance(value, dict):
        if "features" not in value:
            raise CodecError(f'line {number}: expected a list, or an object with "features"')
        value = value["features"]
    if not isinstance(value, list):
        raise CodecError(f"line {number}: expected a list of numbers, got {type(value).__name__}")
    return value


def decode_jsonlines(body: bytes) -> np.ndarray:
    text = _text(body)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        _refuse_binary(text)
        raise CodecError("empty JSON lines body: send one row of features per line")
    try:  # One parse for the whole batch; line by line only to name a bad line.
        values = _loads(f"[{','.join(lines)}]")
    except (ValueError, RecursionError):  # JSONDecodeError, or an integer too long to read
        values = [_parse_json(line, f"line {n}") for n, line in enumerate(lines, 1)]
    if len(values) != len(lines):  # A line holding two values: "1, 2" or "[1], [2]".
        values = [_parse_json(line, f"line {n}") for n, line in enumerate(lines, 1)]
    rows = [_jsonlines_row(value, number) for number, value in enumerate(values, 1)]
    matrix = _matrix(rows, "lines", noun="line")
    if matrix.shape[0] != len(lines):
        raise CodecError("expected one row of features per line")
    return matrix


def decode_npy(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception:  # The header parser raises ValueError, SyntaxError, TokenError...
        raise CodecError(
            "body is not a .npy array: send what numpy.save writes for an array of numbers"
        ) from None
    if not isinstance(array, np.ndarray):
        raise CodecError("body is an .npz archive, not a .npy array")
    if array.dtype.kind not in "iuf":  # Numbers: booleans are not features (see NUMBER)
        raise CodecError(f"expected a .npy array of numbers, got dtype {array.dtype}")
    return _matrix(array, "an array")


def _plain(predictions: np.ndarray) -> np.ndarray:
    """Predictions as an array of one row per input row (object arrays made concrete)."""
    values = np.asarray(predictions)
    if values.dtype == object:
        values = np.asarray(values.tolist())
    return values


def _lines(items: list[Any]) -> str | None:
    """One value per line, or ``None`` when a value needs the csv module: a comma, quote or
    newline in it, or an empty value (csv writes that as ``""``)."""
    try:
        text = "\n".join(items)  # Labels are nearly always str already: no str() per item.
    except TypeError:
        text = "\n".join(map(str, items))
    if "," in text or '"' in text or text.count("\n") != len(items) - 1:
        return None
    return None if "" in items else text


def encode_csv(predictions: np.ndarray) -> bytes:
    """One line per prediction; a label with a comma, quote or newline is quoted."""
    values = np.asarray(predictions)
    if len(values) == 0:
        return b""
    if values.ndim == 1:  # One value per row: joined at once (the csv module is far slower).
        text = _lines(values.tolist())
        if text is not None:
            return (text + "\n").encode("utf-8")
    buffer = io.StringIO()
    rows = _plain(values).reshape(len(values), -1).tolist()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def encode_json(predictions: np.ndarray) -> bytes:
    values = np.asarray(predictions)
    try:  # scikit-learn's labels, an object array of str, as they are: no copy.
        text = json.dumps({"predictions": values.tolist()})
    except TypeError:  # NumPy scalars in an object array
        text = json.dumps({"predictions": _plain(values).tolist()})
    return text.encode("utf-8")


def encode_jsonlines(predictions: np.ndarray) -> bytes:
    values = _plain(predictions)
    if values.ndim == 1 and values.dtype != object:
        # One value per line in one json.dumps call, with a newline between values: a
        # newline inside a string is escaped, so each one ends a value.
        text = json.dumps(values.tolist(), separators=("\n", ":"))[1:-1]
    else:
        text = "\n".join(map(json.dumps, values.tolist()))
    return (text + "\n").encode("utf-8")


def encode_npy(predictions: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, _plain(predictions), allow_pickle=False)
    return buffer.getvalue()


DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    CSV: decode_csv,
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    NPY: decode_npy,
}
ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    CSV: encode_csv,
    JSON: encode_json,
    JSONLINES: encode_jsonlines,
    NPY: encode_npy,
}


def decode(body: bytes, content_type: str | None) -> np.ndarray:
    kind = media_type(content_type) or CSV
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise UnsupportedMediaType(
            f"cannot read Content-Type {kind!r}; send one of: {', '.join(DECODERS)}"
        )
    return decoder(body)


def negotiate(accept: str | None, default: str) -> str:
    """The response type for an ``Accept`` header, honouring q-values and wildcards."""
    if not accept or not accept.strip():
        return default
    offers: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        kind, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if kind and quality > 0:
            offers.append((-quality, position, media_type(kind)))
    for _, _, kind in sorted(offers):
        if kind in ENCODERS:
            return kind
        if kind == "*/*" or (kind.endswith("/*") and default.startswith(kind[:-1])):
            return default
        if kind.endswith("/*"):
            for candidate in ENCODERS:
                if candidate.startswith(kind[:-1]):
                    return candidate
    raise NotAcceptable(
        f"cannot answer with Accept {accept!r}; ask for one of: {', '.join(ENCODERS)}"
    )


def encode(predictions: np.ndarray, kind: str) -> bytes:
    return ENCODERS[kind](predictions)
