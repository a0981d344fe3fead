"""The body codecs of ``/invocations``, as pure functions: media types, content codings, CSV,
``.npy``, JSON Lines and Parquet, with real zlib, numpy and pyarrow."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import math
import sys
import tracemalloc
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelport.errors import BodyTooLarge, InputError, NotAcceptable, UnsupportedMediaType
from modelport.model_format import jsontext
from modelport.model_format.signature import Signature, TensorSpec
from modelport.serving import codec

# --- models ---------------------------------------------------------------------------------

OUT = (TensorSpec("label", "int64", (-1,)),)
#: One input, a matrix: a table is its rows.
MATRIX = Signature((TensorSpec("input", "float32", (-1, 4)),), OUT)
#: A DataFrame model: one [-1, 1] input per column.
TABLE = Signature(
    (
        TensorSpec("a", "float32", (-1, 1)),
        TensorSpec("b", "int64", (-1, 1)),
        TensorSpec("c", "string", (-1, 1)),
        TensorSpec("d", "bool", (-1, 1)),
    ),
    OUT,
)
#: One input that is one column, named.
COLUMN = Signature((TensorSpec("x", "float64", (-1,)),), OUT)
SECRET = "s3cr3tCell"


def csv_of(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # CRLF: a cell's lone CR is quoted
    return buffer.getvalue().encode()


def parse(body: bytes | str, signature: Signature = TABLE, **kw: Any) -> tuple[Any, bool]:
    raw = body.encode() if isinstance(body, str) else body
    payload, header = codec.parse_csv(raw, signature, **kw)
    return payload, header


def enforced(body: bytes | str, signature: Signature = TABLE, **kw: Any) -> dict[str, np.ndarray]:
    payload, _ = parse(body, signature, **kw)
    return signature.enforce(payload.inputs)


def refused(exc: type[Exception], call: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(exc) as info:
        call(*args, **kw)
    message = str(info.value)
    assert SECRET not in message
    return message


# --- media types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (None, ("", {})),
        ("", ("", {})),
        ("application/json", ("application/json", {})),
        (" Text/CSV ", ("text/csv", {})),
        ("text/csv; header=present", ("text/csv", {"header": "present"})),
        (
            "TEXT/CSV;Header=Present;charset=UTF-8",
            ("text/csv", {"header": "Present", "charset": "UTF-8"}),
        ),
        ("text/csv ; header = absent ; q=0.5", ("text/csv", {"header": "absent", "q": "0.5"})),
        ('text/csv; header="present"', ("text/csv", {"header": "present"})),
        ('a/b; x="semi;colon"; y=2', ("a/b", {"x": "semi;colon", "y": "2"})),
        ('a/b; x="q\\"uote"', ("a/b", {"x": 'q"uote'})),
        ("a/b; flag; y=2", ("a/b", {"y": "2"})),
        ('a/b; flag; y="2"', ("a/b", {"y": "2"})),
        ("a/b;", ("a/b", {})),
    ],
)
def test_media_type(value: str | None, want: tuple[str, dict[str, str]]) -> None:
    assert codec.media_type(value) == want


def test_media_type_gives_a_new_dict_each_time() -> None:
    first = codec.media_type("text/csv")[1]
    first["x"] = "y"
    assert codec.media_type("text/csv")[1] == {}


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.+", min_size=1)


@settings(max_examples=100, deadline=None)
@given(
    mimetype=st.tuples(_TOKEN, _TOKEN).map("/".join),
    params=st.dictionaries(
        _TOKEN, st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=8), max_size=4
    ),
    quote=st.booleans(),
)
def test_media_type_reads_what_a_client_writes(
    mimetype: str, params: dict[str, str], quote: bool
) -> None:
    params = {k.lower(): v for k, v in params.items()}
    parts = [mimetype]
    for name, value in params.items():
        plain = value and all(c.isalnum() for c in value)
        if quote or not plain:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name.upper()}="{escaped}"')
        else:
            parts.append(f"{name}={value}")
    assert codec.media_type("; ".join(parts)) == (mimetype.lower(), params)


# --- content codings ------------------------------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


DATA = b"modelport " * 500


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("identity", lambda d: d),
        (" gzip , identity ", gzip.compress),
        ("deflate, gzip", lambda d: gzip.compress(zlib.compress(d))),
        ("gzip, deflate", lambda d: zlib.compress(gzip.compress(d))),
        ("gzip,,", gzip.compress),
    ],
)
def test_decompress(coding: str, encode: Any) -> None:
    assert codec.decompress(encode(DATA), coding, len(DATA)) == DATA


def test_an_empty_body_stays_empty() -> None:
    assert codec.decompress(b"", "gzip", 10) == b""


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    padding=st.integers(0, 3),
)
def test_concatenated_gzip_members_are_one_body(data: bytes, cuts: list[int], padding: int) -> None:
    # gzip -d reads a file of several members as their data one after the other.
    points = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    members = [gzip.compress(data[a:b]) for a, b in itertools.pairwise(points)]
    members = members or [gzip.compress(b"")]
    body = b"".join(members) + b"\0" * padding
    assert codec.decompress(body, "gzip", len(data)) == data
    if data:
        message = refused(BodyTooLarge, codec.decompress, body, "gzip", len(data) - 1)
        assert f"larger than {len(data) - 1} bytes" in message


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=5000), coding=st.sampled_from(["gzip", "deflate"]))
def test_the_limit_is_exact(data: bytes, coding: str) -> None:
    body = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    assert codec.decompress(body, coding, len(data)) == data
    message = refused(BodyTooLarge, codec.decompress, body, coding, len(data) - 1)
    assert "decompressed body is larger than" in message


def _bomb(size: int, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "wbits"),
    [("gzip", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS), ("deflate", -zlib.MAX_WBITS)],
)
def test_a_bomb_is_refused_without_inflating_it(coding: str, wbits: int) -> None:
    body = _bomb(512 << 20, wbits)  # 512 MiB of zeros in about half a MiB
    assert len(body) < 1 << 20
    limit = 1 << 20
    tracemalloc.start()
    try:
        message = refused(BodyTooLarge, codec.decompress, body, coding, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"larger than {limit} bytes" in message
    assert peak < 4 * limit


def test_many_small_gzip_members_are_bounded_together() -> None:
    member = gzip.compress(bytes(1 << 16))
    body = member * 200  # 12.5 MiB in all
    refused(BodyTooLarge, codec.decompress, body, "gzip", 1 << 20)
    assert len(codec.decompress(member * 16, "gzip", 1 << 20)) == 1 << 20


def test_nested_codings_are_each_bounded() -> None:
    body = gzip.compress(gzip.compress(bytes(50 << 20)))
    refused(BodyTooLarge, codec.decompress, body, "gzip, gzip", 1 << 20)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_every_truncation_is_a_400(coding: str) -> None:
    body = gzip.compress(DATA) if coding == "gzip" else zlib.compress(DATA)
    for end in range(1, len(body)):
        message = refused(InputError, codec.decompress, body[:end], coding, 10**6)
        assert "corrupt or truncated" in message


def test_raw_deflate_truncated_is_a_400() -> None:
    body = raw_deflate(DATA)
    for end in range(1, len(body)):
        refused(InputError, codec.decompress, body[:end], "deflate", 10**6)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(DATA) + b"trailing " + SECRET.encode()),
        ("gzip", gzip.compress(DATA) + b"\0\0x"),
        ("deflate", zlib.compress(DATA) + b"trailing"),
        ("gzip", b"not gzip at all " + SECRET.encode()),
        ("deflate", b"not deflate " + SECRET.encode()),
        ("gzip", gzip.compress(DATA)[:-8] + b"\0\0\0\0" + gzip.compress(DATA)[-4:]),  # CRC
    ],
)
def test_corrupt_data_is_a_400(coding: str, body: bytes) -> None:
    refused(InputError, codec.decompress, body, coding, 10**6)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), coding=st.sampled_from(["gzip", "deflate"]))
@example(body=b"\x1f\x8b", coding="gzip")
@example(body=b"\x78\x9c", coding="deflate")
def test_garbage_is_a_400_or_a_413_never_a_crash(body: bytes, coding: str) -> None:
    with contextlib.suppress(InputError, BodyTooLarge):
        codec.decompress(body, coding, 100)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "<script>"])
def test_unknown_codings_are_a_415_naming_the_supported_ones(coding: str) -> None:
    message = refused(UnsupportedMediaType, codec.decompress, gzip.compress(DATA), coding, 10**6)
    assert "gzip, x-gzip, deflate, identity" in message
    assert "<" not in message


# --- CSV in: what the first row is ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "had_header", "rows"),
    [
        ("5.1,3.5,1.4,0.2\n", False, 1),
        ("5.1,3.5,1.4,0.2\r\n1,2,3,4\r\n", False, 2),
        ("1,,3,4\n", False, 1),  # a missing value
        (",2,3,4\n", False, 1),  # a missing first value, not an index
        ("nan,inf,-inf,NaN\n", False, 1),
        ("input,b,c,d\n1,2,3,4\n", True, 1),  # it names the input
    ],
)
def test_matrix_model_first_row(body: str, had_header: bool, rows: int) -> None:
    payload, header = parse(body, MATRIX)
    assert header is had_header
    assert MATRIX.enforce(payload.inputs)["input"].shape == (rows, 4)


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        ("a,b,c,d\n1,2,3,4\n", 1),
        ("sepal length,sepal width,petal length,petal width\n1,2,3,4\n", 1),
        (",a,b,c,d\n0,1,2,3,4\n1,5,6,7,8\n", 2),  # df.to_csv(): the index comes first
        (",0,1,2,3\n0,1,2,3,4\n", 1),  # pd.DataFrame(x).to_csv()
        ("0,1,2,3\n1,2,3,4\n", 1),  # pd.DataFrame(x).to_csv(index=False)
    ],
)
def test_matrix_model_header_present(body: str, rows: int) -> None:
    payload, header = parse(body, MATRIX, header=True)
    assert header is True
    assert MATRIX.enforce(payload.inputs)["input"].shape == (rows, 4)


@pytest.mark.parametrize(
    "body",
    [
        # A matrix has no column names to recognise: names are no data, and no header either.
        "a,b,c,d\n1,2,3,4\n",
        ",a,b,c,d\n0,1,2,3,4\n",
        "a,1,2,3\n1,2,3,4\n",
        f"1,{SECRET},3,4\n",
    ],
)
def test_matrix_model_ambiguous_first_row(body: str) -> None:
    message = refused(InputError, parse, body, MATRIX)
    assert message == (
        "the CSV body's first row is neither a header naming the model's inputs ('input') "
        "nor a row of values; send 'Content-Type: text/csv; header=present' if it is a header, "
        "or header=absent"
    )


@pytest.mark.parametrize(
    ("body", "had_header"),
    [
        ("1.5,2,x,true\n", False),
        ("a,b,c,d\n1.5,2,x,true\n", True),
        ("d,c,b,a\ntrue,x,2,1.5\n", True),  # by name, in any order
        (" a , b ,c,d\n1.5,2,x,true\n", True),
        ("a,b,c,d,extra\n1.5,2,x,true,9\n", True),
        (",a,b,c,d\n7,1.5,2,x,true\n", True),
        ("\ufeffa,b,c,d\n1.5,2,x,true\n", True),  # a BOM
        (",2,x,true\n", False),  # the float input's value is missing
    ],
)
def test_table_model_first_row(body: str, had_header: bool) -> None:
    payload, header = parse(body, TABLE)
    assert header is had_header
    arrays = TABLE.enforce(payload.inputs)
    assert arrays["b"].tolist() == [[2]]
    assert arrays["c"].tolist() == [["x"]]
    assert arrays["d"].tolist() == [[True]]
    a = arrays["a"][0, 0]
    assert a == np.float32(1.5) or (body.startswith(",2") and math.isnan(a))


@pytest.mark.parametrize(
    "body",
    [
        "x,y,z,w\n1.5,2,x,true\n",  # a header, naming other columns
        f"a,b,{SECRET},d\n1.5,2,x,true\n",  # one name wrong
        f"{SECRET},2,x,true\n",  # a data row with a bad value
    ],
)
def test_table_model_ambiguous_first_row(body: str) -> None:
    message = refused(InputError, parse, body, TABLE)
    assert "neither a header naming the model's inputs ('a', 'b', 'c', 'd')" in message
    assert "'Content-Type: text/csv; header=present'" in message
    assert "header=absent" in message


@pytest.mark.parametrize("body", ["1.5,2,x\n", "1.5,2,x,true,5\n", "1,2\n3,4\n"])
def test_headerless_table_of_the_wrong_width(body: str) -> None:
    message = refused(InputError, parse, body, TABLE)
    assert "needs 4 column(s), the model's inputs in order ('a', 'b', 'c', 'd')" in message
    message = refused(InputError, parse, body, TABLE, header=False)
    assert "needs 4 column(s)" in message


def test_header_parameter_decides() -> None:
    # header=present: even a row of numbers is a header; absent: even input names are data.
    payload, header = parse("0,1,2,3\n1,2,3,4\n", MATRIX, header=True)
    assert header is True
    assert MATRIX.enforce(payload.inputs)["input"].tolist() == [[1, 2, 3, 4]]
    payload, header = parse(",0,1,2,3\n0,1,2,3,4\n", MATRIX, header=True)
    assert payload.ignored == ("index",)
    assert MATRIX.enforce(payload.inputs)["input"].tolist() == [[1, 2, 3, 4]]
    payload, header = parse(",0,1,2\n", MATRIX, header=False)
    assert header is False
    assert np.isnan(MATRIX.enforce(payload.inputs)["input"][0, 0])
    message = refused(InputError, parse, "a,b,c,d\n1.5,2,x,true\n", TABLE, header=False)
    assert "CSV column 'a': expected numbers" in message


def test_single_column_model() -> None:
    payload, header = parse("x\n1\n2\n", COLUMN)
    assert header and COLUMN.enforce(payload.inputs)["x"].tolist() == [1.0, 2.0]
    payload, header = parse("1\n2\n", COLUMN)
    assert not header and COLUMN.enforce(payload.inputs)["x"].tolist() == [1.0, 2.0]
    payload, header = parse("y,x\nfoo,1\n", COLUMN)
    assert payload.ignored == ("y",)
    refused(InputError, parse, "y,x\nfoo,1\n", COLUMN, strict=True)
    assert "header=present" in refused(InputError, parse, "y\n1\n", COLUMN)


# --- CSV in: columns, cells -----------------------------------------------------------------


def test_ignored_columns_and_the_index() -> None:
    payload, _ = parse(",a,b,c,d,extra,more\n0,1.5,2,x,true,9,8\n", TABLE)
    assert payload.ignored == ("index", "extra", "more")
    assert set(payload.inputs) == {"a", "b", "c", "d"}
    payload, _ = parse(",a,b,c,d\n0,1,2,3,4\n", MATRIX, header=True)
    assert payload.ignored == ("index",)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (",a,b,c,d,extra\n0,1.5,2,x,true,9\n", "'index', 'extra'"),
        (",a,b,c,d\n0,1.5,2,x,true\n", "'index'"),
        ("a,b,c,d,extra\n1.5,2,x,true,9\n", "'extra'"),
    ],
)
def test_strict_refuses_what_feeds_no_input(body: str, names: str) -> None:
    message = refused(InputError, parse, body, TABLE, strict=True)
    assert f"column(s) {names} feed no input" in message
    assert "strict" in message


def test_strict_refuses_the_index_of_a_matrix() -> None:
    message = refused(InputError, parse, ",a,b,c,d\n0,1,2,3,4\n", MATRIX, header=True, strict=True)
    assert "'index'" in message


def test_a_missing_input_is_named_with_the_unknown_columns() -> None:
    payload, _ = parse("a,b,c,extra\n1.5,2,x,9\n", TABLE, header=True)
    with pytest.raises(InputError, match=r"missing input.*'d'.*unknown input.*'extra'"):
        TABLE.enforce(payload.inputs)


def test_cells_are_converted_by_their_input() -> None:
    payload, _ = parse("a,b,c,d\n1,2,3,1\n2.5,-4,x y,FALSE\nnan,0,,t\n", TABLE)
    inputs = payload.inputs
    assert [type(v) for v in inputs["a"]] == [float, float, float]
    assert inputs["b"] == [2, -4, 0] and all(type(v) is int for v in inputs["b"])
    assert inputs["c"] == ["3", "x y", ""]  # text as sent
    assert inputs["d"] == [True, False, True]
    assert math.isnan(inputs["a"][2])


def test_float_cells() -> None:
    body = "a,b,c,d\n" + "".join(
        f"{v},1,x,1\n" for v in ("inf", "-Infinity", "NaN", " 2.5 ", "", "1e3")
    )
    a = enforced(body)["a"].ravel()
    assert np.isinf(a[0]) and a[0] > 0 and np.isinf(a[1]) and a[1] < 0
    assert np.isnan(a[2]) and a[3] == 2.5 and np.isnan(a[4]) and a[5] == 1000


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,,x,1", "CSV column 'b': an empty cell, and input 'b' is int64"),
        ("1,2,x,", "CSV column 'd': an empty cell, and input 'd' is bool"),
        (f"1,{SECRET},x,1", "CSV column 'b': expected integers"),
        ("1,1_000,x,1", "CSV column 'b': expected integers"),
        (f"{SECRET},1,x,1", "CSV column 'a': expected numbers"),
        ("1_0,1,x,1", "CSV column 'a': expected numbers"),
        ("\u0661,1,x,1", "CSV column 'a': expected numbers"),  # an Arabic-Indic digit
        (f"1,1,x,{SECRET}", "CSV column 'd': expected booleans"),
    ],
)
def test_bad_cells_are_named_by_column(cells: str, message: str) -> None:
    assert message in refused(InputError, parse, "a,b,c,d\n1,2,x,1\n" + cells + "\n", TABLE)


def test_integer_cells_written_as_floats_are_kept_when_lossless() -> None:
    assert enforced("a,b,c,d\n1,3.0,x,1\n1,1e3,x,1\n")["b"].ravel().tolist() == [3, 1000]
    with pytest.raises(InputError, match="fractional"):
        enforced("a,b,c,d\n1,3.5,x,1\n")


def test_matrix_cells_are_named_by_header_or_place() -> None:
    assert "CSV column 'b': expected numbers" in refused(
        InputError, parse, f"a,b,c,d\n1,{SECRET},3,4\n", MATRIX, header=True
    )
    assert "CSV column 3: expected numbers" in refused(
        InputError, parse, f"1,2,3,4\n1,2,{SECRET},4\n", MATRIX
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "at least one row"),
        (b"\n\n", "at least one row"),
        (b"input,b,c,d\n", "at least one row"),
        (b"input,b,c,d\n1,2,3\n", "4 value(s), one per header column"),
        (b"1,2,3,4\n1,2,3\n", "4 value(s), as the first row has"),
        (b"\xff\xfe1,2,3,4\n", "UTF-8"),
        (b'1,2,3,"4"x\n', "malformed CSV"),
        (b'1,2,3,"4\n', "malformed CSV"),
        (b'"', "malformed CSV"),
    ],
)
def test_bad_bodies(body: bytes, message: str) -> None:
    assert message in refused(InputError, parse, body, MATRIX)


def test_quoted_cells() -> None:
    payload, _ = parse('a,b,c,d\n1,2,"x, ""y""\nz",1\n', TABLE)
    assert payload.inputs["c"] == ['x, "y"\nz']


_FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(_FLOATS, min_size=4, max_size=4), min_size=1, max_size=40))
def test_headerless_matrix_keeps_every_row(rows: list[list[float]]) -> None:
    # What SageMaker's CSVSerializer and Batch Transform send: N rows in, N rows out.
    arrays = enforced(csv_of(rows), MATRIX)
    assert arrays["input"].shape == (len(rows), 4)
    np.testing.assert_array_equal(arrays["input"], np.array(rows, dtype=np.float32))


_TABLE_ROW = st.tuples(
    _FLOATS,
    st.integers(-(2**63), 2**63 - 1),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_TABLE_ROW, min_size=1, max_size=30),
    order=st.permutations(range(4)),
    header=st.booleans(),
    extra=st.booleans(),
)
def test_table_round_trip(
    rows: list[tuple[float, int, str, bool]], order: list[int], header: bool, extra: bool
) -> None:
    names = ["a", "b", "c", "d"]
    # The text column's cells make no header by themselves unless they name every input.
    cells = [[str(v).lower() if isinstance(v, bool) else v for v in row] for row in rows]
    if header:
        columns = [names[i] for i in order] + (["extra"] if extra else [])
        table = [columns] + [[r[i] for i in order] + ([0] if extra else []) for r in cells]
    else:
        table = [list(r) for r in cells]
    # Told nothing, the first row says: its float cell is never an input's name.
    payload, had_header = codec.parse_csv(csv_of(table), TABLE, header=None, strict=False)
    assert had_header is header
    assert payload.ignored == (("extra",) if header and extra else ())
    arrays = TABLE.enforce(payload.inputs)
    assert arrays["a"].ravel().tolist() == [np.float32(r[0]) for r in rows]
    assert arrays["b"].ravel().tolist() == [r[1] for r in rows]
    assert arrays["c"].ravel().tolist() == [r[2] for r in rows]
    assert arrays["d"].ravel().tolist() == [r[3] for r in rows]


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 300), header=st.sampled_from([None, False]))
def test_headerless_table_of_n_rows_is_n_rows(count: int, header: bool | None) -> None:
    rows = [[i / 7, i, f"t{i}", i % 2 == 0] for i in range(count)]
    body = csv_of([[a, b, c, str(d).lower()] for a, b, c, d in rows])
    payload, had_header = codec.parse_csv(body, TABLE, header=header, strict=True)
    assert not had_header
    arrays = TABLE.enforce(payload.inputs)
    assert all(a.shape == (count, 1) for a in arrays.values())
    assert arrays["b"].ravel().tolist() == list(range(count))


_FLOAT_CELLS = ["1", "2.5", "-3", "", "nan", "inf", " 4 ", "1e3"]
#: Cells a client may send for each input, and the header names of a matrix's columns.
_POOLS: dict[str, list[list[str]]] = {
    "matrix": [_FLOAT_CELLS] * 4,
    "table": [
        _FLOAT_CELLS,
        ["1", "-3", "0", "7"],
        ["x", "a", "1", "", "d"],
        ["true", "0", "False"],
    ],
    "column": [_FLOAT_CELLS],
}
_MODELS = {"matrix": MATRIX, "table": TABLE, "column": COLUMN}


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    model=st.sampled_from(list(_MODELS)),
    count=st.integers(1, 6),
    header=st.sampled_from([None, True, False]),
    names=st.booleans(),
    strict=st.booleans(),
)
def test_predictions_are_always_one_per_data_row(
    data: st.DataObject, model: str, count: int, header: bool | None, names: bool, strict: bool
) -> None:
    # Whatever cells a client sends its inputs: exactly one row of inputs per data row.
    signature, pools = _MODELS[model], _POOLS[model]
    rows = [[data.draw(st.sampled_from(pool)) for pool in pools] for _ in range(count)]
    # Told, the body follows; untold, it may start with the inputs' names (a matrix's columns
    # have no names of their own, so there an untold header is ambiguous and refused).
    has_names = header if header is not None else names and model != "matrix"
    columns = ["w", "x", "y", "z"] if model == "matrix" else list(signature.input_names)
    table = [columns, *rows] if has_names else rows
    payload, had_header = codec.parse_csv(csv_of(table), signature, header=header, strict=strict)
    arrays = signature.enforce(payload.inputs)
    if header is not None:
        assert had_header is header
    assert {a.shape[0] for a in arrays.values()} == {len(table) - had_header}


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    model=st.sampled_from(list(_MODELS)),
    first=st.sampled_from(["data", "names", "index"]),
    count=st.integers(0, 8),
    told=st.booleans(),
)
def test_the_first_row_is_never_misread(
    data: st.DataObject, model: str, first: str, count: int, told: bool
) -> None:
    signature, pools = _MODELS[model], _POOLS[model]
    names = ["w", "x", "y", "z"] if model == "matrix" else list(signature.input_names)
    order = data.draw(st.permutations(range(len(pools)))) if first != "data" else range(len(pools))
    rows = [[data.draw(st.sampled_from(pools[j])) for j in order] for _ in range(count)]
    table = rows
    if first == "names":
        table = [[names[j] for j in order], *rows]
    elif first == "index":
        table = [["", *(names[j] for j in order)], *([str(i), *r] for i, r in enumerate(rows))]
    has_header = first != "data"
    refusal = ""
    try:
        payload, had_header = codec.parse_csv(
            csv_of(table), signature, header=has_header if told else None, strict=False
        )
        arrays = signature.enforce(payload.inputs)
    except InputError as exc:
        refusal = str(exc)
    if refusal:
        # Refused, never misread: no rows, a value enforcement refuses, or an ambiguous row.
        assert count == 0 or "header=present" in refusal or "expects" in refusal, refusal
        return
    assert had_header is has_header
    assert {a.shape[0] for a in arrays.values()} == {count}
    assert payload.ignored == (("index",) if first == "index" else ())


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), signature=st.sampled_from([MATRIX, TABLE, COLUMN]))
def test_csv_garbage_is_a_400_never_a_crash(body: bytes, signature: Signature) -> None:
    with contextlib.suppress(InputError):
        codec.parse_csv(body, signature, header=None, strict=False)


def test_one_row_hot_path() -> None:
    payload, header = codec.parse_csv(b"5.1,3.5,1.4,0.2", MATRIX, header=None, strict=False)
    assert payload.inputs == {"input": [[5.1, 3.5, 1.4, 0.2]]} and header is False


# --- CSV out --------------------------------------------------------------------------------


OUTPUTS = {
    "label": np.array([1, 0], dtype=np.int64),
    "probabilities": np.array([[0.9, 0.1], [np.nan, np.inf]], dtype=np.float32),
}


def test_format_csv() -> None:
    assert codec.format_csv(OUTPUTS, header=False) == b"1,0.9,0.1\n0,nan,inf\n"
    assert codec.format_csv(OUTPUTS, header=True) == (
        b"label,probabilities_0,probabilities_1\n1,0.9,0.1\n0,nan,inf\n"
    )


@pytest.mark.parametrize(
    ("outputs", "want"),
    [
        ({"f": np.array([0.1, -np.inf, 1e300])}, b"f\n0.1\n-inf\n1e+300\n"),
        ({"f": np.array([0.9], np.float16)}, b"f\n0.9\n"),
        ({"b": np.array([True, False])}, b"b\ntrue\nfalse\n"),
        ({"t": np.array(["x,y", 'q"', b"raw"], dtype=object)}, b't\n"x,y"\n"q"""\nraw\n'),
        ({"t": np.array(["u"], dtype="<U1")}, b"t\nu\n"),
        ({"s": np.array(3.5)}, b"s\n3.5\n"),
        ({"w": np.zeros((2, 1, 2), np.int8)}, b"w_0,w_1\n0,0\n0,0\n"),
        ({"e": np.zeros((0,), np.int8)}, b"e\n"),
        ({"u": np.array([2**64 - 1], np.uint64)}, b"u\n18446744073709551615\n"),
    ],
)
def test_format_csv_cells(outputs: dict[str, np.ndarray], want: bytes) -> None:
    assert codec.format_csv(outputs, header=True) == want


def test_format_csv_rows_must_agree() -> None:
    with pytest.raises(NotAcceptable, match="application/json"):
        codec.format_csv({"a": np.zeros(2), "b": np.zeros(3)}, header=False)


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements={"allow_nan": True, "allow_infinity": True},
    )
)
def test_csv_answers_read_back_in_numpy_and_pandas(array: np.ndarray) -> None:
    body = codec.format_csv({"p": array}, header=False)
    back = np.genfromtxt(io.BytesIO(body), delimiter=",", dtype=array.dtype, ndmin=2)
    np.testing.assert_array_equal(back, array)
    pandas = pytest.importorskip("pandas")
    # pandas 2's default float parser may miss by an ulp (1.3905218751153067e-155 read as
    # ...307e-155); its round-trip one, the default in pandas 3, reads what was written.
    frame = pandas.read_csv(
        io.BytesIO(body), header=None, dtype=array.dtype, float_precision="round_trip"
    )
    np.testing.assert_array_equal(frame.to_numpy(), array)
    # And it is what this server reads: float inputs take nan and inf cells, and float32's
    # largest values as printed ("3.4028235e+38" rounds to float32's max, it is in range).
    signature = Signature((TensorSpec("p", array.dtype.name, (-1, array.shape[1])),), OUT)
    np.testing.assert_array_equal(enforced(body, signature, header=False)["p"], array)


def test_a_csv_answer_with_its_header_is_a_csv_request() -> None:
    signature = Signature(
        (
            TensorSpec("label", "int64", (-1, 1)),
            TensorSpec("probabilities_0", "float32", (-1, 1)),
            TensorSpec("probabilities_1", "float32", (-1, 1)),
        ),
        OUT,
    )
    arrays = enforced(codec.format_csv(OUTPUTS, header=True), signature)
    assert arrays["label"].ravel().tolist() == [1, 0]
    np.testing.assert_array_equal(arrays["probabilities_0"].ravel(), OUTPUTS["probabilities"][:, 0])


# --- npy ------------------------------------------------------------------------------------


def npy(array: np.ndarray, **kw: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kw)
    return buffer.getvalue()


def npy_header(header: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([*_DTYPES, "U"]),
    order=st.sampled_from(["C", "F"]),
    endian=st.sampled_from(["<", ">", "="]),
)
def test_npy_round_trip(data: st.DataObject, dtype: str, order: str, endian: str) -> None:
    np_dtype = np.dtype("<U4") if dtype == "U" else np.dtype(dtype)
    if np_dtype.itemsize > 1 and dtype != "U":
        np_dtype = np_dtype.newbyteorder(endian)
    array = data.draw(hnp.arrays(np_dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0)))
    body = npy(np.asarray(array, order=order))
    read = codec.read_npy(body)
    assert read.shape == array.shape
    assert read.dtype.isnative and read.flags.c_contiguous and read.flags.writeable
    np.testing.assert_array_equal(read, array)
    name = "string" if dtype == "U" else dtype
    signature = Signature((TensorSpec("t", name, (-1,) * array.ndim),), OUT)
    payload = codec.parse_npy(body, signature, strict=False)
    if array.ndim:
        np.testing.assert_array_equal(signature.enforce(payload.inputs)["t"], array)


def test_npy_versions_2_and_3() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    for version in ((2, 0), (3, 0)):
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # "can only be read by numpy >= ..."
            warnings.simplefilter("ignore")
            np.lib.format.write_array(buffer, array, version=version)
        np.testing.assert_array_equal(codec.read_npy(buffer.getvalue()), array)


@pytest.mark.parametrize(
    "array",
    [
        np.float32(2.5),
        np.arange(5, dtype=np.int64),
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
        np.array([["ab", "c"]]),
    ],
)
def test_npy_headers_spaced_otherwise_read_the_same(array: np.ndarray) -> None:
    # np.save's own header is read without literal_eval; any other spelling of the same header
    # (here: no spaces, and the keys in another order) takes literal_eval to the same array.
    body = npy(array)
    start = 10 + int.from_bytes(body[8:10], "little")
    header = np.lib.format.header_data_from_array_1_0(array)
    text = "{" + ",".join(f"{k!r}:{v!r}" for k, v in reversed(header.items())) + "}"
    other = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + body[start:]
    assert body[10:start] != text.encode()
    for read in (codec.read_npy(body), codec.read_npy(other)):
        assert read.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(read, array)


def test_npy_a_plain_array_is_the_one_input() -> None:
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    payload = codec.parse_npy(npy(x), MATRIX)
    assert MATRIX.enforce(payload.inputs)["input"].dtype == np.float32
    message = refused(InputError, codec.parse_npy, npy(x), TABLE)
    assert "structured .npy array with a field per input" in message
    assert "'a', 'b', 'c', 'd'" in message


def test_npy_a_structured_array_is_a_table() -> None:
    record = np.zeros(3, dtype=[("d", "?"), ("c", "<U3"), ("b", ">i8"), ("a", "<f4"), ("z", "<i2")])
    record["a"] = [1.5, 2.5, 3.5]
    record["b"] = [1, 2, 3]
    record["c"] = ["x", "yy", "zzz"]
    payload = codec.parse_npy(npy(record), TABLE)
    assert payload.ignored == ("z",)
    arrays = TABLE.enforce(payload.inputs)
    assert arrays["b"].ravel().tolist() == [1, 2, 3]
    assert arrays["c"].ravel().tolist() == ["x", "yy", "zzz"]
    assert "'z'" in refused(InputError, codec.parse_npy, npy(record), TABLE, strict=True)


def test_npy_a_structured_array_with_sub_arrays() -> None:
    record = np.zeros(2, dtype=[("input", "<f8", (4,))])
    record["input"] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    arrays = MATRIX.enforce(codec.parse_npy(npy(record), MATRIX).inputs)
    assert arrays["input"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    nested = np.zeros(2, dtype=[("a", [("x", "<f4")])])
    assert "itself structured" in refused(InputError, codec.parse_npy, npy(nested), TABLE)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (npy(np.array([1, SECRET], dtype=object), allow_pickle=True), "pickle"),
        (
            npy_header({"descr": [("a", "O")], "fortran_order": False, "shape": (1,)}) + bytes(8),
            "pickle",
        ),
        (npy_header({"descr": "<f8", "fortran_order": False, "shape": (10**12,)}), "do not fit"),
        (
            npy_header({"descr": "<f8", "fortran_order": False, "shape": (2**40, 2**40)}),
            "do not fit",
        ),
        (
            npy_header({"descr": "<f8", "fortran_order": False, "shape": (0, 2**62, 2**62)}),
            "cannot be made",
        ),
        (npy_header({"descr": "<f8", "fortran_order": False, "shape": (0,) * 65}), "more than 64"),
        (npy_header({"descr": "<f8", "fortran_order": False, "shape": (-1,)}), "not a valid"),
        (npy_header({"descr": "<f8", "fortran_order": 0, "shape": (1,)}) + bytes(8), "not a valid"),
        (npy_header({"descr": "|V0", "fortran_order": False, "shape": (10**9,)}), "no size"),
        (npy_header({"descr": SECRET, "fortran_order": False, "shape": (1,)}), "dtype"),
        (npy(np.zeros(3)) + b"x", "do not fit"),
        (npy(np.zeros(3))[:-1], "do not fit"),
        (b"\x93NUMPY\x04\x00" + bytes(8), "version"),
        (SECRET.encode() * 3, "not a .npy array"),
        (b"\x93NUMPY\x01\x00\xff\xff{", "longer than"),
    ],
)
def test_npy_refusals(body: bytes, message: str) -> None:
    assert message in refused(InputError, codec.read_npy, body)


def test_npy_every_truncation_is_a_400() -> None:
    body = npy(np.arange(5, dtype=np.int32))
    for end in range(len(body)):
        refused(InputError, codec.read_npy, body[:end])


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=120))
def test_npy_garbage_is_a_400_never_a_crash(tail: bytes) -> None:
    for head in (
        b"\x93NUMPY\x01\x00",
        b"\x93NUMPY\x02\x00",
        b"\x93NUMPY\x01\x00" + bytes([len(tail), 0]),
    ):
        with contextlib.suppress(InputError):
            codec.read_npy(head + tail)


def test_format_npy_one_output() -> None:
    for array in (np.arange(4, dtype=np.int64), np.ones((2, 3), np.float32), np.array(True)):
        back = np.load(io.BytesIO(codec.format_npy({"o": array})), allow_pickle=False)
        np.testing.assert_array_equal(back, array)
        assert back.dtype == array.dtype


def test_format_npy_text_is_unicode_never_object() -> None:
    text = np.array([["a", "bc"], ["", b"d"]], dtype=object)
    back = np.load(io.BytesIO(codec.format_npy({"t": text})), allow_pickle=False)
    assert back.dtype.kind == "U" and back.tolist() == [["a", "bc"], ["", "d"]]
    empty = np.load(io.BytesIO(codec.format_npy({"t": np.empty((0, 2), object)})))
    assert empty.shape == (0, 2) and empty.dtype.kind == "U"


def test_format_npy_several_outputs_are_one_structured_array() -> None:
    outputs = {**OUTPUTS, "name": np.array(["x", "yz"], dtype=object)}
    back = np.load(io.BytesIO(codec.format_npy(outputs)), allow_pickle=False)
    assert back.dtype.names == ("label", "probabilities", "name")
    assert back.shape == (2,)
    assert back["label"].tolist() == [1, 0]
    np.testing.assert_array_equal(back["probabilities"], OUTPUTS["probabilities"])
    assert back["name"].tolist() == ["x", "yz"]


@pytest.mark.parametrize(
    "outputs",
    [
        {"a": np.zeros(2), "b": np.zeros(3)},
        {"a": np.zeros(2), "b": np.array(1.0)},
    ],
)
def test_format_npy_refuses_what_no_array_holds(outputs: dict[str, np.ndarray]) -> None:
    with pytest.raises(NotAcceptable, match="application/json"):
        codec.format_npy(outputs)


def test_npy_answer_is_an_npy_request() -> None:
    back = codec.parse_npy(codec.format_npy({"input": np.ones((3, 4), np.float32)}), MATRIX)
    assert MATRIX.enforce(back.inputs)["input"].shape == (3, 4)


# --- JSON Lines -----------------------------------------------------------------------------


def test_parse_jsonlines() -> None:
    body = b'\xef\xbb\xbf{"a": 1, "b": [1, 2]}\r\n\n  \r\n[NaN, Infinity, -Infinity]\n3\n"t"'
    rows = codec.parse_jsonlines(body)
    assert rows[0] == {"a": 1, "b": [1, 2]}
    assert math.isnan(rows[1][0]) and rows[1][1:] == [math.inf, -math.inf]
    assert rows[2:] == [3, "t"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'1\n\n{"a": ' + SECRET.encode() + b"}\n",
            "line 3 of the JSON Lines body: malformed JSON (column 7)",
        ),
        (b"[1,\n2]\n", "line 1 of the JSON Lines body"),
        (b"", "no rows"),
        (b"\n \r\n", "no rows"),
        (b"[" * 65 + b"]" * 65, "deeper than 64"),
    ],
)
def test_parse_jsonlines_refusals(body: bytes, message: str) -> None:
    assert message in refused(InputError, codec.parse_jsonlines, body)


def test_many_tiny_lines_are_bounded_like_one_array() -> None:
    limit = jsontext.MAX_JSON_VALUES
    body = b"1\n" * (limit + 1)
    message = refused(InputError, codec.parse_jsonlines, body)
    assert f"more than {limit} values" in message
    # As many as an array may hold are read.
    with pytest.raises(InputError):
        jsontext.check_json_size(b"[" + b"1," * limit + b"1]")
    assert len(codec.parse_jsonlines(b"1\n" * 10_000)) == 10_000


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(_JSON, min_size=1, max_size=10), crlf=st.booleans())
def test_jsonlines_reads_each_line_as_json_does(rows: list[Any], crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    body = end.join(json.dumps(r) for r in rows).encode()
    assert codec.parse_jsonlines(body) == [jsontext.loads(json.dumps(r).encode()) for r in rows]


def test_format_jsonlines() -> None:
    assert codec.format_jsonlines({"label": np.array([1, 0])}) == b"1\n0\n"
    assert codec.format_jsonlines(OUTPUTS) == (
        b'{"label":1,"probabilities":[0.9,0.1]}\n{"label":0,"probabilities":[NaN,Infinity]}\n'
    )
    assert codec.format_jsonlines({"p": np.ones((2, 2), np.float32) * np.float32(0.9)}) == (
        b"[0.9,0.9]\n[0.9,0.9]\n"
    )
    assert codec.format_jsonlines({"s": np.array(2.5)}) == b"2.5\n"
    assert codec.format_jsonlines({"t": np.array(["a", "b"], object)}) == b'"a"\n"b"\n'
    assert codec.format_jsonlines({"e": np.zeros(0)}) == b""
    with pytest.raises(NotAcceptable, match="application/json"):
        codec.format_jsonlines({"a": np.zeros(2), "b": np.zeros(3)})


@settings(max_examples=60, deadline=None)
@given(
    label=hnp.arrays(np.int64, st.integers(0, 8)),
    data=st.data(),
)
def test_jsonlines_answer_reads_back(label: np.ndarray, data: st.DataObject) -> None:
    scores = data.draw(hnp.arrays(np.float32, (len(label), 2), elements={"allow_nan": True}))
    outputs = {"label": label, "scores": scores}
    lines = codec.format_jsonlines(outputs)
    assert lines.count(b"\n") == len(label) and (not lines or lines.endswith(b"\n"))
    if len(label):
        rows = codec.parse_jsonlines(lines)
        assert [r["label"] for r in rows] == label.tolist()
        np.testing.assert_array_equal(
            np.array([r["scores"] for r in rows], dtype=np.float32), scores
        )


# --- Parquet --------------------------------------------------------------------------------

LIMIT = 1 << 20


def parquet(frame: Any, **kw: Any) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, **kw)
    return buffer.getvalue()


@pytest.fixture
def pd() -> Any:
    pytest.importorskip("pyarrow")
    return pytest.importorskip("pandas")


def test_parquet_is_a_table(pd: Any) -> None:
    frame = pd.DataFrame(
        {
            "d": [True, False],
            "c": pd.Categorical(["x", "y"]),
            "b": np.array([1, 2], np.int64),
            "a": [1.5, None],
            "extra": ["p", "q"],
        },
        index=[10, 20],
    )
    payload = codec.parse_parquet(parquet(frame), TABLE, strict=False, limit=LIMIT)
    assert payload.ignored == ("__index_level_0__", "extra")
    arrays = TABLE.enforce(payload.inputs)
    assert arrays["b"].ravel().tolist() == [1, 2]
    assert arrays["c"].ravel().tolist() == ["x", "y"]
    assert arrays["d"].ravel().tolist() == [True, False]
    assert arrays["a"][0, 0] == 1.5 and np.isnan(arrays["a"][1, 0])
    message = refused(
        InputError, codec.parse_parquet, parquet(frame), TABLE, strict=True, limit=LIMIT
    )
    assert "'__index_level_0__', 'extra'" in message


def test_parquet_for_a_matrix_model(pd: Any) -> None:
    frame = pd.DataFrame(np.arange(8, dtype=np.float32).reshape(2, 4), columns=list("wxyz"))
    payload = codec.parse_parquet(parquet(frame), MATRIX, limit=LIMIT)
    assert MATRIX.enforce(payload.inputs)["input"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # A stored pandas index is not a column of the matrix.
    payload = codec.parse_parquet(
        parquet(frame.set_index(pd.Index(["r1", "r2"]))), MATRIX, limit=LIMIT
    )
    assert payload.ignored == ("__index_level_0__",)
    assert MATRIX.enforce(payload.inputs)["input"].shape == (2, 4)


def test_parquet_nested_columns_are_refused(pd: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"a": [[1.0, 2.0]], "b": [{"x": 1}]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    message = refused(InputError, codec.parse_parquet, buffer.getvalue(), TABLE, limit=LIMIT)
    assert "'a', 'b'" in message and "lists, structs or maps" in message


@pytest.mark.parametrize("cut", [1, 8, 100, -8, -1])
def test_parquet_corrupt_files_are_a_fixed_400(pd: Any, cut: int) -> None:
    body = parquet(pd.DataFrame({"a": [1.5], SECRET: ["x"]}))
    broken = body[:cut] if cut > 0 else body[:cut] + SECRET.encode()
    message = refused(InputError, codec.parse_parquet, broken, TABLE, limit=LIMIT)
    assert message == "the body is not a Parquet file this server can read"


def test_parquet_garbage_is_a_400(pd: Any) -> None:
    for body in (b"", b"PAR1", b"PAR1" + bytes(100) + b"PAR1", SECRET.encode()):
        refused(InputError, codec.parse_parquet, body, TABLE, limit=LIMIT)


def test_parquet_bombs_are_refused_before_decoding(pd: Any) -> None:
    # Zeros compress and run-length encode to almost nothing.
    frame = pd.DataFrame({"a": np.zeros(3_000_000)})
    body = parquet(frame, compression="zstd")
    assert len(body) < 100_000
    message = refused(BodyTooLarge, codec.parse_parquet, body, TABLE, limit=10**9)
    assert "more than 2000000 values" in message
    noise = pd.DataFrame({"a": np.random.default_rng(0).normal(size=20_000)})
    message = refused(BodyTooLarge, codec.parse_parquet, parquet(noise), TABLE, limit=50_000)
    assert "larger than 50000 bytes uncompressed" in message


def test_parquet_without_pyarrow_is_a_415(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    message = refused(UnsupportedMediaType, codec.parse_parquet, b"PAR1", TABLE, limit=LIMIT)
    assert "pip install 'modelport[parquet]'" in message
