"""Request decoding and response encoding, chosen by ``Content-Type`` and ``Accept``.

In: ``text/csv`` (one row per line, an optional header row, quoted fields) and
``application/json`` (``{"instances": rows}``, ``{"inputs": rows}``, a list of rows, or one
row). Out: the same two types. A request without ``Content-Type`` is read as CSV; an
``Accept`` that is missing or ``*/*`` gets the request's own type back, so batch transform
output lines up with its input.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np

CSV = "text/csv"
JSON = "application/json"


class CodecError(ValueError):
    """A request that cannot be read or answered as asked; ``status`` is the HTTP status."""

    status = 400


class UnsupportedMediaType(CodecError):
    status = 415


class NotAcceptable(CodecError):
    status = 406


def media_type(header: str | None) -> str:
    """``"Text/CSV; charset=utf-8"`` -> ``"text/csv"``; ``""`` for a missing header."""
    return (header or "").split(";", 1)[0].strip().lower()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CodecError(f"body is not UTF-8 text: {exc}") from None


def _is_number(field: str) -> bool:
    try:
        float(field.strip().strip('"'))
    except ValueError:
        return False
    return True


def decode_csv(body: bytes) -> np.ndarray:
    text = _text(body)
    if not text.strip():
        raise CodecError("empty CSV body: send one row of features per line")
    first_line, _, rest = text.lstrip().partition("\n")
    header = not any(_is_number(field) for field in first_line.split(","))
    if header and not rest.strip():
        raise CodecError("the CSV body has a header but no rows")
    try:
        rows = np.loadtxt(
            io.StringIO(text),
            delimiter=",",
            dtype=np.float64,
            ndmin=2,
            quotechar='"',
            skiprows=1 if header else 0,
        )
    except ValueError as exc:
        raise CodecError(f"could not read the CSV body as numbers: {exc}") from None
    return rows


def decode_json(body: bytes) -> np.ndarray:
    try:
        document = json.loads(_text(body))
    except json.JSONDecodeError as exc:
        raise CodecError(f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        for key in ("instances", "inputs"):
            if key in document:
                document = document[key]
                break
        else:
            raise CodecError('expected a list of rows, or an object with "instances" or "inputs"')
    try:
        rows = np.asarray(document, dtype=np.float64)
    except (TypeError, ValueError):
        raise CodecError(
            "expected rows of numbers, all of the same length (for example [[1.0, 2.0]])"
        ) from None
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2 or rows.size == 0:
        raise CodecError(f"expected a non-empty list of rows, got an array of shape {rows.shape}")
    return rows


def encode_csv(predictions: np.ndarray) -> bytes:
    buffer = io.StringIO()
    values = np.asarray(predictions)
    for row in values.reshape(len(values), -1).tolist():
        buffer.write(",".join(map(str, row)))
        buffer.write("\n")
    return buffer.getvalue().encode("utf-8")


def encode_json(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": np.asarray(predictions).tolist()}).encode("utf-8")


DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {CSV: decode_csv, JSON: decode_json}
ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {CSV: encode_csv, JSON: encode_json}


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
            offers.append((-quality, position, kind.lower()))
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
