"""Read interactions into a Spark DataFrame and bring them to rekko's rules, inside Spark.

The same rules as :meth:`rekko.data.Dataset.from_frame`, applied by the cluster instead of the
driver: ids present; ids that are all integers become ``long`` (else strings as written);
ratings and values finite numbers >= 0; event types weighted; duplicate (user, item) pairs
aggregated (explicit ratings: the last one wins, by timestamp then file order; implicit values:
``sum``, ``max`` or ``last``). Checks cost one pass over the data; errors name the source and
the column (Spark cannot name a file line the way the single-machine reader does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rekko.data.dataset import EVENT, ITEM, RATING, TIMESTAMP, USER, VALUE, Aggregate, EventWeights
from rekko.data.readers import PARQUET_SUFFIXES, TEXT_SUFFIXES, ColumnMap, sniff_separator
from rekko.errors import DataError

FileFormat = Literal["auto", "csv", "parquet"]

# The integer ids rekko's readers accept (see rekko.data.readers.normalize_ids).
_INTEGER = r"^\s*(0|-?[1-9][0-9]{0,17})\s*$"
_ROW = "_rekko_row"


@dataclass(frozen=True)
class Events:
    """Aggregated interactions in Spark: columns ``user_id``, ``item_id``, ``value``.

    ``user_kind`` / ``item_kind`` say whether ids are ``"int"`` (column of longs) or ``"str"``.
    """

    frame: Any
    explicit: bool
    user_kind: Literal["int", "str"]
    item_kind: Literal["int", "str"]
    source: str


def redact_jdbc(url: str) -> str:
    """A JDBC URL with any ``password=...`` or ``user:password@`` part hidden."""
    url = re.sub(r"(?i)(password=)[^&;]*", r"\1***", url)
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def read_source(
    spark: Any,
    source: str | Path | None,
    *,
    columns: ColumnMap | None = None,
    jdbc_url: str | None = None,
    table: str | None = None,
    query: str | None = None,
    jdbc_options: Mapping[str, str] | None = None,
    file_format: FileFormat = "auto",
    sep: str | None = None,
    encoding: str = "UTF-8",
) -> tuple[Any, str]:
    """The picked columns of a CSV file, Parquet data or JDBC table, renamed to rekko's names.

    ``source`` is a path or URI Spark can read (``/data/events.csv``, ``hdfs:///logs/*.parquet``,
    ``s3a://bucket/events/``), or ``None`` with ``jdbc_url`` and ``table`` or ``query`` (a URL
    starting with ``jdbc:`` passed as ``source`` works too). ``jdbc_options`` holds further
    Spark JDBC options (``user``, ``password``, ``driver``, ``partitionColumn``, ``lowerBound``,
    ``upperBound``, ``numPartitions``, ``fetchsize``). Returns the frame, with a ``_rekko_row``
    column giving file order, and a label of the source for messages.
    """
    if source is not None and _database_scheme(str(source)) is not None:
        converted, implied = jdbc_from_sqlalchemy(str(source))
        source, jdbc_url = None, converted
        jdbc_options = {**implied, **(jdbc_options or {})}
    if source is not None and str(source).startswith("jdbc:"):
        if jdbc_url is not None:
            raise DataError("give a JDBC URL either as the source or as jdbc_url, not both")
        source, jdbc_url = None, str(source)
    if (source is None) == (jdbc_url is None):
        raise DataError("give exactly one of a file source or jdbc_url")
    if jdbc_url is not None:
        frame, label = _read_jdbc(spark, jdbc_url, table, query, jdbc_options)
    else:
        assert source is not None
        if table is not None or query is not None or jdbc_options:
            raise DataError("table, query and jdbc_options only apply to a JDBC source")
        frame, label = _read_files(spark, str(source), file_format, sep, encoding)
    # Header names as a person reads them (a UTF-8 byte order mark and spaces dropped).
    frame = frame.toDF(*[str(name).lstrip("\ufeff").strip() for name in frame.columns])
    wanted = (columns or ColumnMap()).resolve(list(frame.columns), source=label)
    from pyspark.sql import functions as sf

    picked = frame.select(*[sf.col(f"`{name}`").alias(out) for name, out in wanted.items()])
    return picked.withColumn(_ROW, sf.monotonically_increasing_id()), label


# SQLAlchemy backends -> (JDBC scheme, driver class, default port).
_JDBC = {
    "postgresql": ("postgresql", "org.postgresql.Driver", 5432),
    "mysql": ("mysql", "com.mysql.cj.jdbc.Driver", 3306),
    "mariadb": ("mariadb", "org.mariadb.jdbc.Driver", 3306),
    "mssql": ("sqlserver", "com.microsoft.sqlserver.jdbc.SQLServerDriver", 1433),
}


def _database_scheme(source: str) -> str | None:
    """The SQLAlchemy backend of a database URL (``postgresql+psycopg://``), else ``None``."""
    scheme, sep, _ = source.partition("://")
    backend = scheme.split("+")[0].lower()
    if sep and (backend in _JDBC or backend == "sqlite"):
        return backend
    return None


def jdbc_from_sqlalchemy(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL as rekko's readers take it -> ``(JDBC URL, JDBC options)``.

    Options hold ``driver`` and, when the URL has them, ``user`` and ``password`` (kept out of
    the JDBC URL so that they never appear in messages). SQLite needs the xerial driver jar.
    """
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise DataError("cannot parse the database URL") from None
    backend = parsed.get_backend_name()
    options: dict[str, str] = {}
    if backend == "sqlite":
        options["driver"] = "org.sqlite.JDBC"
        return f"jdbc:sqlite:{parsed.database or ''}", options
    if backend not in _JDBC:
        raise DataError(f"no JDBC mapping for database kind {backend!r}")
    scheme, driver, port = _JDBC[backend]
    options["driver"] = driver
    if parsed.username:
        options["user"] = parsed.username
    if parsed.password is not None:
        options["password"] = str(parsed.password)
    where = f"{parsed.host or 'localhost'}:{parsed.port or port}"
    if scheme == "sqlserver":
        return f"jdbc:sqlserver://{where};databaseName={parsed.database or ''}", options
    return f"jdbc:{scheme}://{where}/{parsed.database or ''}", options


def _read_jdbc(
    spark: Any,
    url: str,
    table: str | None,
    query: str | None,
    options: Mapping[str, str] | None,
) -> tuple[Any, str]:
    if (table is None) == (query is None):
        raise DataError(
            "a JDBC source needs exactly one of table or query", source=redact_jdbc(url)
        )
    label = f"{redact_jdbc(url)} " + (f"table {table!r}" if table is not None else "query")
    reader = spark.read.format("jdbc").option("url", url)
    reader = reader.option("dbtable", table) if table is not None else reader.option("query", query)
    for key, value in (options or {}).items():
        reader = reader.option(key, value)
    try:
        return reader.load(), label
    except Exception as error:  # Py4J wraps the driver's SQLException
        raise DataError(f"cannot read: {_first_line(error)}", source=label) from None


def _read_files(
    spark: Any, source: str, file_format: FileFormat, sep: str | None, encoding: str
) -> tuple[Any, str]:
    kind = file_format if file_format != "auto" else _guess_format(source)
    local = Path(source) if "://" not in source else None
    if local is not None and not any(ch in source for ch in "*?[") and not local.exists():
        raise DataError("file not found", source=source)
    try:
        if kind == "parquet":
            return spark.read.parquet(source), source
        if sep is None:
            sep = _guess_separator(source, local)
        reader = spark.read.options(
            header=True,
            sep=sep,
            encoding=encoding,
            quote='"',
            escape='"',
            inferSchema=False,
            mode="FAILFAST",
        )
        return reader.csv(source), source
    except Exception as error:
        raise DataError(f"cannot read: {_first_line(error)}", source=source) from None


def _guess_format(source: str) -> Literal["csv", "parquet"]:
    name = source.rstrip("/").lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "csv"
    local = Path(source) if "://" not in source else None
    if local is not None and local.is_dir():
        names = [path.name.lower() for path in local.iterdir()]
        if any(name.endswith(PARQUET_SUFFIXES) for name in names):
            return "parquet"
        if any(name.endswith(TEXT_SUFFIXES) for name in names):
            return "csv"
    raise DataError(
        "cannot tell the file format from the name: pass file_format='csv' or 'parquet'",
        source=source,
    )


def _guess_separator(source: str, local: Path | None) -> str:
    """Tab for ``.tsv``; otherwise sniffed from a local file's header, else a comma."""
    if source.lower().endswith(".tsv"):
        return "\t"
    if local is not None and local.is_file():
        with local.open(encoding="utf-8-sig", newline="") as handle:
            header = next((line.rstrip("\r\n") for line in handle if line.strip()), "")
        return sniff_separator(header)
    return ","


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def prepare_events(
    frame: Any,
    *,
    source: str,
    event_weights: EventWeights | Mapping[str, float] | None = None,
    aggregate: Aggregate = "sum",
) -> Events:
    """Validate, weigh and aggregate a frame from :func:`read_source` (one checking pass)."""
    from pyspark.sql import functions as sf
    from pyspark.sql import types as st

    names = set(frame.columns)
    explicit = RATING in names
    checks: dict[str, Any] = {}
    for column in (USER, ITEM):
        text = sf.trim(sf.col(column).cast("string"))
        checks[f"missing:{column}"] = sf.sum(
            sf.when(sf.col(column).isNull() | (text == ""), 1).otherwise(0)
        )
        kind = frame.schema[column].dataType
        if isinstance(kind, st.StringType):
            checks[f"integer:{column}"] = sf.min(
                sf.when(sf.col(column).rlike(_INTEGER), 1).otherwise(0)
            )
        elif isinstance(kind, (st.FloatType, st.DoubleType, st.DecimalType)):
            exact = sf.col(column) == sf.round(sf.col(column))
            checks[f"integer:{column}"] = sf.min(sf.when(exact, 1).otherwise(0))

    number_column = RATING if explicit else (VALUE if VALUE in names else None)
    value = sf.lit(1.0) if number_column is None else sf.col(number_column).try_cast("double")
    if number_column is not None:
        not_number = sf.col(number_column).isNotNull() & value.isNull()
        checks[f"not_number:{number_column}"] = sf.sum(sf.when(not_number, 1).otherwise(0))
        bad = value.isNull() | sf.isnan(value) | (value < 0) | (sf.abs(value) == float("inf"))
        checks[f"bad_value:{number_column}"] = sf.sum(sf.when(bad, 1).otherwise(0))

    weight = sf.lit(1.0)
    if EVENT in names:
        weights = (
            event_weights
            if isinstance(event_weights, EventWeights)
            else EventWeights(dict(event_weights or {}), None if event_weights else 1.0)
        )
        event = sf.trim(sf.col(EVENT).cast("string"))
        checks[f"missing:{EVENT}"] = sf.sum(sf.when(event.isNull() | (event == ""), 1).otherwise(0))
        table = sf.create_map(*[sf.lit(x) for pair in weights.weights.items() for x in pair])
        known = (
            sf.try_element_at(table, sf.col(EVENT).cast("string"))
            if weights.weights
            else sf.lit(None)
        )
        if weights.default is None:
            checks[f"unknown_event:{EVENT}"] = sf.sum(sf.when(known.isNull(), 1).otherwise(0))
        weight = sf.coalesce(known.cast("double"), sf.lit(weights.default or 0.0))
    if not explicit:
        value = value * weight

    order: Any = sf.col(_ROW)
    if TIMESTAMP in names:
        stamp = _seconds(frame, TIMESTAMP)
        checks[f"bad_timestamp:{TIMESTAMP}"] = sf.sum(
            sf.when(sf.col(TIMESTAMP).isNotNull() & stamp.isNull(), 1).otherwise(0)
        )
        order = sf.struct(sf.coalesce(stamp, sf.lit(float("-inf"))), sf.col(_ROW))

    try:
        found = frame.agg(*[expr.alias(name) for name, expr in checks.items()]).first().asDict()
    except Exception as error:  # the first full read: malformed files fail here
        raise DataError(f"cannot read: {_first_line(error)}", source=source) from None
    _raise_for(found, source)

    kinds: dict[str, Literal["int", "str"]] = {}
    ids: dict[str, Any] = {}
    for column in (USER, ITEM):
        kind = frame.schema[column].dataType
        integral = isinstance(kind, (st.IntegerType, st.LongType, st.ShortType, st.ByteType))
        if integral or found.get(f"integer:{column}") == 1:
            kinds[column] = "int"
            ids[column] = sf.trim(sf.col(column).cast("string")).cast("long")
        else:
            kinds[column] = "str"
            ids[column] = sf.col(column).cast("string")

    rows = frame.select(
        ids[USER].alias(USER), ids[ITEM].alias(ITEM), value.alias(VALUE), order.alias("_order")
    )
    how = "last" if explicit else aggregate
    if how == "sum":
        combined = sf.sum(VALUE)
    elif how == "max":
        combined = sf.max(VALUE)
    else:
        combined = sf.max_by(VALUE, "_order")
    events = rows.groupBy(USER, ITEM).agg(combined.cast("double").alias(VALUE))
    return Events(events, explicit, kinds[USER], kinds[ITEM], source)


def _seconds(frame: Any, column: str) -> Any:
    """Unix seconds of a timestamp column: numbers as they are, text or dates parsed."""
    from pyspark.sql import functions as sf
    from pyspark.sql import types as st

    kind = frame.schema[column].dataType
    if isinstance(kind, st.NumericType):
        return sf.col(column).cast("double")
    if isinstance(kind, (st.TimestampType, st.TimestampNTZType, st.DateType)):
        return sf.unix_timestamp(sf.col(column).cast("timestamp")).cast("double")
    text = sf.trim(sf.col(column).cast("string"))
    parsed = sf.unix_timestamp(sf.try_to_timestamp(text)).cast("double")
    return sf.coalesce(text.try_cast("double"), parsed)


_MESSAGES = {
    "missing": "{n} row(s) without a value (ids and event types must be present)",
    "integer": "",
    "not_number": "{n} value(s) that are not numbers",
    "bad_value": "{n} value(s) that are not finite numbers >= 0",
    "unknown_event": "{n} row(s) with an event type that has no weight (set a default with '*=1')",
    "bad_timestamp": "{n} timestamp(s) that are neither numbers (unix seconds) nor dates",
}


def _raise_for(found: Mapping[str, Any], source: str) -> None:
    for name, count in found.items():
        check, _, column = name.partition(":")
        if check == "integer" or not count:
            continue
        if check == "bad_value" and found.get(f"not_number:{column}"):
            continue
        raise DataError(_MESSAGES[check].format(n=count), source=source, column=column)
