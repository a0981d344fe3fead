"""Which columns feed which inputs, and which outputs become which columns: decided once.

A :class:`Plan` is made from a table's schema (a Spark DataFrame's, an Arrow file's, or the
columns a UDF is given) and the package's signature, before a row is read. Every problem a
schema can have is found here and reported at once, each naming its column: a missing column,
a column of a type the input cannot take without loss, a null policy the input's dtype cannot
honour. Engines only describe their columns (:class:`Column`) and follow the plan.

Nothing here imports Spark or Arrow: the engines translate their types into these terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelport.errors import InputError, UsageError, quote_name, quote_names
from modelport.model_format.signature import DTYPES, Signature, TensorSpec

#: What to do with a null in a column that feeds the model.
ON_NULL = ("error", "skip", "nan")

#: A column holding one array (a Spark ``array`` or ML vector, an Arrow list) per row.
ARRAY = "array"
#: A Spark ML vector (``pyspark.ml.linalg.VectorUDT``): dense or sparse, float64 values.
VECTOR = "vector"

#: Output dtypes as Spark (and every file format) can hold them: Spark has no unsigned
#: integers and no float16, so those widen (losslessly) to the next type it has.
WRITTEN_DTYPE = {
    "uint8": "int16",
    "uint16": "int32",
    "uint32": "int64",
    "float16": "float32",
}


def one_value_per_row(spec: TensorSpec) -> bool:
    """Whether an input or output holds one value per row (``[-1]`` or ``[-1, 1]``)."""
    return len(spec.shape) == 1 or spec.shape == (-1, 1)


def element_column(name: str, index: int) -> str:
    """The column a table without arrays (CSV) gives element ``index`` of array column ``name``."""
    return f"{name}_{index}"


def check_on_null(on_null: str) -> None:
    """Refuse an unknown null policy (:attr:`Plan.on_null`).

    Raises:
        UsageError: naming the policies there are.
    """
    if on_null not in ON_NULL:
        raise UsageError(f"on_null must be one of {', '.join(map(repr, ON_NULL))}, not {on_null!r}")


@dataclass(frozen=True)
class Column:
    """One column of a table, as an engine describes it.

    Attributes:
        name: the column's name.
        kind: a signature dtype name (``float64``, ``string``, …) for a column of one value per
            row; :data:`ARRAY` or :data:`VECTOR` for one array per row; anything else (the
            engine's own type name) for a type no input can take.
        element: for an array column, its elements' dtype name (or the engine's type name).
        nullable: whether the column may hold nulls (each batch is checked only then).
    """

    name: str
    kind: str
    element: str | None = None
    nullable: bool = True

    def describe(self) -> str:
        """The column's type for messages: ``float64``, ``array<float32>``, ``vector``."""
        return f"array<{self.element}>" if self.kind == ARRAY else self.kind


@dataclass(frozen=True)
class Feed:
    """How one input of the model is made from columns.

    Attributes:
        input: the signature input.
        columns: the columns it is made of.
        layout: ``column`` (one column, one value per row), ``matrix`` (one column per element
            of a ``[-1, k]`` input, in order) or ``array`` (one array or vector column).
    """

    input: TensorSpec
    columns: tuple[str, ...]
    layout: str


@dataclass(frozen=True)
class Output:
    """One output of the model as a result column.

    Attributes:
        name: the signature output.
        column: the result column's name (the prefix, then the output's name).
        dtype: the dtype it is written in (:data:`WRITTEN_DTYPE`).
        width: None for one value per row; for an array per row, its length (-1: not fixed).
    """

    name: str
    column: str
    dtype: str
    width: int | None


@dataclass(frozen=True)
class Plan:
    """Everything an engine needs to score a batch, checked against the schema.

    Attributes:
        feeds: one per model input.
        outputs: the outputs asked for, in order.
        on_null: ``error``, ``skip`` (rows with a null in a feeding column get null outputs) or
            ``nan`` (nulls become NaN; float inputs only).
        nullable: the feeding columns that may hold nulls.
    """

    feeds: tuple[Feed, ...]
    outputs: tuple[Output, ...]
    on_null: str
    nullable: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column that feeds the model, each once, in the order the feeds name them."""
        return tuple(dict.fromkeys(c for feed in self.feeds for c in feed.columns))


def make_plan(
    table: Sequence[Column],
    signature: Signature,
    *,
    columns: Sequence[str] | None = None,
    outputs: str | Sequence[str] | None = None,
    prefix: str = "",
    on_null: str = "error",
    keep: bool = True,
) -> Plan:
    """Decide how ``table``'s columns feed ``signature``'s inputs, or say every reason they can't.

    Inputs take the columns of their names. A model with one ``[-1, k]`` input also takes
    ``k`` columns in order (the whole table, or ``columns``), or one array or vector column.

    Args:
        table: the columns there are.
        signature: the package's.
        columns: the columns that feed the model (all of ``table`` when None). Given, every one
            must feed an input.
        outputs: the outputs wanted (a name, or names); all of them when None.
        prefix: put before each output's name to make its column's.
        on_null: see :attr:`Plan.on_null`.
        keep: the table's columns are kept beside the outputs (an output's column must not be
            called as one of them).

    Raises:
        UsageError: an unknown output or null policy.
        InputError: the table cannot feed the model; every problem, each naming its column.
    """
    check_on_null(on_null)
    by_name = {c.name: c for c in table}
    if columns is not None:
        unknown = [c for c in columns if c not in by_name]
        if unknown:
            raise InputError(
                f"no column(s) {quote_names(unknown)}; the columns are {_listing(table)}"
            )
        chosen = [by_name[c] for c in columns]
    else:
        chosen = list(table)
    problems: list[str] = []
    feeds = _feeds(chosen, signature, explicit=columns is not None, problems=problems)
    for feed in feeds:
        problems.extend(_type_problems(feed, by_name))
        if on_null == "nan" and DTYPES[feed.input.dtype].kind != "f":
            problems.append(
                f"on_null='nan' needs float inputs; input {feed.input.name!r} is "
                f"{feed.input.dtype} (use on_null='skip' or 'error')"
            )
    wanted = plan_outputs(signature, outputs, prefix)
    if keep:
        taken = [o.column for o in wanted if o.column in by_name]
        if taken:
            problems.append(
                f"output column(s) {quote_names(taken)} are already columns of the table; "
                "choose a prefix for the outputs"
            )
    if problems:
        raise InputError("; ".join(problems))
    feeding = dict.fromkeys(c for feed in feeds for c in feed.columns)
    nullable = tuple(c for c in feeding if by_name[c].nullable)
    return Plan(tuple(feeds), tuple(wanted), on_null, nullable)


def _listing(table: Sequence[Column]) -> str:
    names = [c.name for c in table]
    return quote_names(names) if names else "none"


def _feeds(
    chosen: list[Column], signature: Signature, *, explicit: bool, problems: list[str]
) -> list[Feed]:
    names = {c.name for c in chosen}
    inputs = signature.inputs
    if all(spec.name in names for spec in inputs):
        by_name = {c.name: c for c in chosen}
        if explicit:
            extra = [c.name for c in chosen if c.name not in signature.input_names]
            if extra:
                problems.append(
                    f"column(s) {quote_names(extra)} feed no input; the model's inputs are "
                    f"{_described(inputs)}"
                )
        return [_named_feed(spec, by_name[spec.name]) for spec in inputs]
    if len(inputs) == 1:
        spec = inputs[0]
        positional = _positional_feed(spec, chosen, explicit=explicit, problems=problems)
        if positional is not None:
            return [positional]
        if problems:
            return []
    missing = [spec.name for spec in inputs if spec.name not in names]
    hint = ""
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and not explicit:
        hint = (
            "; name the columns that feed it (--columns, columns=): one per feature, or one "
            "array or vector column"
        )
    problems.append(
        f"no column(s) {quote_names(missing)}: the model's inputs are {_described(inputs)}, "
        f"the columns are {_listing(chosen)}{hint}"
    )
    return []


def _described(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name!r} ({s.describe()})" for s in specs)


def _named_feed(spec: TensorSpec, column: Column) -> Feed:
    return Feed(spec, (column.name,), "column" if one_value_per_row(spec) else "array")


def _positional_feed(
    spec: TensorSpec, chosen: list[Column], *, explicit: bool, problems: list[str]
) -> Feed | None:
    """A lone input fed without its name: one array column, or one column per element."""
    if one_value_per_row(spec):
        if explicit and len(chosen) == 1 and chosen[0].kind not in (ARRAY, VECTOR):
            return Feed(spec, (chosen[0].name,), "column")
        return None
    if len(spec.shape) != 2:
        return None
    if len(chosen) == 1 and chosen[0].kind in (ARRAY, VECTOR):
        return Feed(spec, (chosen[0].name,), "array")
    width = spec.shape[1]
    if not chosen or any(c.kind in (ARRAY, VECTOR) for c in chosen):
        return None
    if width not in (-1, len(chosen)):
        hint = "" if explicit else "; name the columns that feed it (--columns, columns=)"
        problems.append(
            f"input {spec.name!r} ({spec.describe()}) takes {width} columns, one per feature, "
            f"in order; there are {len(chosen)}: {_listing(chosen)}{hint}"
        )
        return None
    return Feed(spec, tuple(c.name for c in chosen), "matrix")


def _type_problems(feed: Feed, by_name: dict[str, Column]) -> list[str]:
    want = feed.input.dtype
    found: list[str] = []
    for name in feed.columns:
        column = by_name[name]
        if feed.layout == "array":
            if column.kind == VECTOR:
                source = "float64"
            elif column.kind == ARRAY:
                source = column.element or ""
            else:
                found.append(
                    f"column {quote_name(name)} is {column.describe()}; input {feed.input.name!r} "
                    f"({feed.input.describe()}) takes an array or vector per row"
                )
                continue
        elif column.kind in (ARRAY, VECTOR):
            found.append(
                f"column {quote_name(name)} holds an array per row; input {feed.input.name!r} "
                f"({feed.input.describe()}) takes one value per row from it"
            )
            continue
        else:
            source = column.kind
        if not feeds_losslessly(source, want):
            found.append(
                f"column {quote_name(name)} is {column.describe()}; input "
                f"{feed.input.name!r} expects {want}{_cast_hint(source, want)}"
            )
    return found


def feeds_losslessly(source: str, target: str) -> bool:
    """Whether every value of a ``source`` column is a ``target`` value without loss.

    Integers and floats feed float inputs (as the signature takes JSON numbers; float64 into
    float32 is checked for range value by value). Integers feed integer inputs that hold every
    value of their type. Booleans feed booleans only, text feeds text only.
    """
    if source not in DTYPES or target not in DTYPES:
        return False
    src, dst = DTYPES[source], DTYPES[target]
    if dst.kind == "f":
        return src.kind in "iuf"
    if dst.kind in "iu":
        return src.kind in "iu" and bool(np.can_cast(src, dst, "safe"))
    return source == target


def _cast_hint(source: str, target: str) -> str:
    if source in DTYPES and target in DTYPES and DTYPES[target].kind in "iu":
        if DTYPES[source].kind in "iu":
            return f" and some {source} values do not fit; cast the column if they all do"
        if DTYPES[source].kind == "f":
            return "; floats would lose their fractional part: cast the column if it has none"
    return ""


def plan_outputs(
    signature: Signature, outputs: str | Sequence[str] | None, prefix: str = ""
) -> list[Output]:
    """The outputs wanted (all of them when None) as result columns named ``prefix`` + name.

    Raises:
        UsageError: an output is unknown or named twice.
        InputError: an output is neither one value nor one array per row.
    """
    names = [outputs] if isinstance(outputs, str) else list(outputs or signature.output_names)
    if not names:
        raise UsageError("outputs must name at least one output")
    known = {spec.name: spec for spec in signature.outputs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown output(s) {quote_names(unknown)}; the model's outputs are "
            f"{_described(signature.outputs)}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"outputs name an output twice: {quote_names(names)}")
    found: list[Output] = []
    for name in names:
        spec = known[name]
        if one_value_per_row(spec):
            width = None
        elif len(spec.shape) == 2:
            width = spec.shape[1]
        else:
            raise InputError(
                f"output {name!r} is {spec.describe()}: batch scoring writes one value or one "
                "array per row; choose other outputs"
            )
        if spec.dtype not in DTYPES or spec.dtype == "uint64":
            raise InputError(f"output {name!r} is {spec.dtype}, which a table cannot hold")
        dtype = WRITTEN_DTYPE.get(spec.dtype, spec.dtype)
        found.append(Output(name, prefix + name, dtype, width))
    return found
