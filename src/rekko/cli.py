"""The ``rekko`` command line: train, recommend, predict, similar, evaluate, split, datasets.

Commands parse flags and the config, build a spec, call :mod:`rekko.workflows` (which reads the
data and the model folders and picks the engine), show progress and print or write what comes
back. The data flags are declared once, in :data:`rekko.config.DATA_OPTIONS`. Bad input gives
one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, cast

import pandas as pd
import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rekko import workflows
from rekko.config import (
    DATA_OPTIONS,
    INTERACTION_OPTIONS,
    DataSpec,
    config_section,
    data_spec,
    read_config,
)
from rekko.errors import DataError, RekkoError

if TYPE_CHECKING:
    from rekko.constraints import Constraint
    from rekko.data.dataset import Dataset
    from rekko.index.ann import IndexMode
    from rekko.reports.charts import ImageFormat


Command = typer.core.TyperCommand | typer.core.TyperGroup


def _readable_help(command: Command) -> None:
    """Make ``command``'s help page read as written.

    Texts are escaped so that ``[data]`` is a word, not Rich markup; flags (``--help``,
    ``--all-users``) show no ``<bool>``; a repeatable option shows the value it takes
    (``<str>``, not ``<list[str]>``), its help saying that it repeats.
    """
    for attribute in ("help", "short_help", "epilog"):
        text = getattr(command, attribute)
        if text:
            setattr(command, attribute, escape(text))
    context = typer.Context(command)
    help_option = command.get_help_option(context)  # made once, then cached
    for parameter in [*command.params, *([help_option] if help_option else [])]:
        text = getattr(parameter, "help", None)
        if text:
            parameter.help = escape(text)  # type: ignore[attr-defined]
        if not isinstance(parameter, typer.core.TyperOption) or parameter.metavar is not None:
            continue
        if parameter.is_flag:
            parameter.metavar = ""
        elif parameter.multiple:  # <list[str]> -> <str>
            shown = parameter.display_type(context)
            parameter.metavar = re.sub(r"^<list\[(.*)\]>$", r"<\1>", shown).lower()


class _ReadableHelpGroup(typer.core.TyperGroup):
    """A command group whose help page, and its commands', read as written.

    Each group sees to its own page and those of its commands; a subgroup has done its own.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _readable_help(self)
        for command in self.commands.values():
            if isinstance(command, typer.core.TyperCommand):
                _readable_help(command)


app = typer.Typer(
    name="rekko",
    cls=_ReadableHelpGroup,
    help="Recommendations from your own data: load, train, evaluate and recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(
    cls=_ReadableHelpGroup,
    help="Built-in data sets: list them, download MovieLens, export the demo shop as CSV files.",
)
app.add_typer(datasets_app, name="datasets")

console = Console()
errors = Console(stderr=True)

# -- shared options ------------------------------------------------------------------------
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="A rekko.toml with [data] and per-command keys.")
]

#: The data flags a command received, by ``[data]`` key (``None`` where not given).
DataFlags = dict[str, str | None]


def data_options(
    names: tuple[str, ...] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Offer the data flags ``names`` (default: all of ``DATA_OPTIONS``) on a command.

    Each flag is declared once, in :data:`rekko.config.DATA_OPTIONS`; a command offers only
    the ones it reads. It declares one keyword-only parameter ``data: DataFlags`` that receives
    them; its place in the signature is where the flags go (and so their order in ``--help``).
    """
    chosen = [option for option in DATA_OPTIONS if names is None or option.name in names]
    unknown = set(names or ()) - {option.name for option in DATA_OPTIONS}
    if unknown:
        raise ValueError(f"not data options: {', '.join(sorted(unknown))}")
    flags = [
        inspect.Parameter(
            option.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option(*option.flags, help=option.help)],
        )
        for option in chosen
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        if "data" not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a 'data: DataFlags' parameter")
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name == "data":
                parameters.extend(flags)
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def run(**values: Any) -> None:
            data = {option.name: values.pop(option.name) for option in chosen}
            command(**values, data=data)

        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return run

    return decorate


#: The extra that installs each optional top-level module (``pip install 'rekko[EXTRA]'``).
EXTRA_OF_MODULE = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "alembic": "serve",
    "prometheus_client": "serve",
    "matplotlib": "reports",
    "tensorflow": "tf",
    "keras": "tf",
    "ai_edge_litert": "tf",
    "pyspark": "spark",
    "faiss": "ann",
    "psycopg": "postgres",
    "pymysql": "mysql",
}


def _missing_extra(error: ImportError) -> str | None:
    """One line saying what to install for ``error``, or ``None`` when no extra provides it."""
    if "pip install" in str(error):  # rekko's own checks already say it
        return str(error)
    module = (error.name or "").partition(".")[0]
    if module not in EXTRA_OF_MODULE:
        return None
    return f"{module} is not installed: pip install 'rekko[{EXTRA_OF_MODULE[module]}]'"


def _requires_modules(
    *modules: str,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Check that ``modules`` are installed before a command starts (or prints) anything."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            missing = [name for name in modules if importlib.util.find_spec(name) is None]
            if missing:
                extras = sorted({EXTRA_OF_MODULE[name] for name in missing})
                raise ImportError(
                    f"rekko {command.__name__} needs {', '.join(missing)}: "
                    f"pip install 'rekko[{','.join(extras)}]'"
                )
            command(*args, **kwargs)

        return run

    return decorate


def _print_data(dataset: Dataset) -> None:
    """The one-line summary of the data a command loaded."""
    console.print(f"[dim]{dataset}[/dim]")


@contextmanager
def _working(description: str) -> Iterator[None]:
    """A spinner for ``description``, plus a progress bar for each kind of step the library
    reports meanwhile (training epochs, tuning trials, models evaluated)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from rekko import progress

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        bars.add_task(description, total=None)
        tasks: dict[str, TaskID] = {}

        def listen(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bars.add_task(task, total=total)
            bars.update(tasks[task], completed=done, total=total)

        with progress.listening(listen):
            yield


def _parse_params(pairs: list[str] | None, base: dict[str, Any]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, true, lists)."""
    params = dict(base)
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--param expects key=value, got {pair!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _model_params(
    pairs: list[str] | None, base: dict[str, Any], names: list[str]
) -> dict[str, dict[str, Any]]:
    """``MODEL.key=value`` pairs (and a config's ``{model: {key: value}}``) per model name."""
    if not isinstance(base, dict) or not all(isinstance(v, dict) for v in base.values()):
        raise DataError("[evaluate] params must be a table per model: params.als = { ... }")
    chosen: dict[str, dict[str, Any]] = {name: dict(values) for name, values in base.items()}
    for pair in pairs or []:
        target, dot, rest = pair.partition(".")
        if not dot or "=" not in rest:
            raise DataError(f"--param expects MODEL.key=value (e.g. als.factors=128), got {pair!r}")
        key_value = _parse_params([rest], {})
        chosen.setdefault(target.strip(), {}).update(key_value)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise DataError(
            f"parameters for {', '.join(unknown)}, which --models does not name "
            f"({', '.join(names)})"
        )
    return chosen


def _parse_filters(text: str | None) -> Constraint | None:
    """The constraints of a ``--filter`` flag (JSON), or ``None`` when it was not given."""
    if text is None:
        return None
    from rekko.constraints import parse_constraints

    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        example = '{"price": {"max": 50}}'
        raise DataError(f"--filter must be JSON, e.g. '{example}' ({error.msg})") from None
    return parse_constraints(spec)


def _write_table(frame: pd.DataFrame, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".json":
        output.write_text(frame.to_json(orient="records", indent=2))
    elif output.suffix == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    console.print(f"Wrote {len(frame)} rows to {output}")


def _is_numeric(values: pd.Series) -> bool:
    if values.dtype.kind in "iuf":
        return True
    return values.dtype.kind == "O" and bool(
        values.map(
            lambda value: isinstance(value, int | float) and not isinstance(value, bool)
        ).all()
    )


def _print_frame(frame: pd.DataFrame, title: str | None = None, digits: int = 4) -> None:
    """``frame`` as a table; ids are never cut short (a long one folds onto the next line)."""
    table = Table(title=title)
    for column in frame.columns:
        is_id = str(column).endswith("_id")
        table.add_column(
            str(column),
            justify="right" if _is_numeric(frame[column]) else "left",
            overflow="fold" if is_id else "ellipsis",
        )
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def _metrics_by_column(result: pd.DataFrame) -> pd.DataFrame:
    """An evaluation (one row per model or file) with one column per model when it has more
    than eight metrics, headed by the model's name (or the file's), so that it fits a screen."""
    if len(result.columns) <= 8:
        return result
    label = next((c for c in ("model", "recommendations") if c in result.columns), None)
    named = result.set_index(label) if label is not None else result
    by_model = named.astype(object).T  # counts stay integers next to the scores
    return by_model.reset_index().set_axis(["metric", *named.index.astype(str)], axis=1)


def _examples(*commands: str) -> str:
    """The epilog of a command's ``--help``: a few complete command lines to start from."""
    return "Examples:\n" + "\n".join(f"  {command}" for command in commands)


# -- commands ------------------------------------------------------------------------------
@app.command(
    epilog=_examples(
        "rekko train --dataset demo -m ease -o models/demo",
        "rekko train -i events.csv --user-col visitorid --item-col itemid --event-col event "
        "--event-weights view=1,addtocart=3,transaction=5 -m als -o models/shop",
        "rekko train -i sqlite:///shop.db --table events -m als -o models/shop",
    )
)
@data_options()
def train(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name (see `rekko models`).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Model folder to write.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Hyperparameter key=value (repeat).")
    ] = None,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="local (this process, default) or spark: ALS with Spark MLlib (model "
            "spark-als), ids mapped in Spark; the data is read by Spark, not loaded here.",
        ),
    ] = None,
    master: Annotated[
        str | None,
        typer.Option(
            "--master", help="Spark master for --engine spark: local[*] (default), spark://..."
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            min=0.001,
            help="Seconds --model auto may spend choosing and fitting its blend (default 600).",
        ),
    ] = None,
) -> None:
    """Train a model on your data and save it to a folder."""
    settings = read_config(config)
    section = config_section(settings, "train", ("model", "output", "params", "engine", "master"))
    engine = engine or section.get("engine", "local")
    model = model or section.get("model")
    params = _parse_params(param, section.get("params", {}))
    if time_budget is not None:
        if model != "auto":
            raise DataError("--time-budget applies to --model auto only")
        params["time_budget"] = time_budget
    spec = workflows.TrainSpec(  # checks the engine, master and model against each other
        data=data_spec(settings, data),
        model=model,
        output=output or (Path(section["output"]) if "output" in section else None),
        params=params,
        engine=cast(workflows.Engine, engine),
        master=master or section.get("master"),
    )
    with _working(spec.describe()):
        result = workflows.train(spec, loaded=_print_data)
    console.print(
        f"Trained [bold]{result.model}[/bold] in {result.seconds:.2f} s; saved to {result.output}"
    )


@app.command(
    epilog=_examples(
        "rekko recommend -m models/demo --user u0001 -k 10",
        "rekko recommend -m models/demo --all-users -k 100 -o recs.csv",
        'rekko recommend -m models/shop --user u0001 --filter \'{"price": {"max": 50}}\'',
    )
)
def recommend(
    model: Annotated[Path, typer.Option("--model", "-m", help="A trained model folder.")],
    user: Annotated[
        list[str] | None, typer.Option("--user", "-u", help="User id (repeat).")
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every user the model knows.")
    ] = False,
    k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, max=10_000, help="Items per user.")
    ] = 10,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV/JSON/Parquet file.")
    ] = None,
    filters: Annotated[
        str | None,
        typer.Option("--filter", help='Constraints as JSON, e.g. {"price": {"max": 50}}.'),
    ] = None,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Also recommend the user's training items.")
    ] = False,
    index: Annotated[
        str | None,
        typer.Option(
            "--index",
            help="Top-K search of factor models: auto (the HNSW index from 50,000 items), "
            "exact or ann.",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local, or spark: rank in Spark and write a Parquet folder (--output) for "
            "factor models such as spark-als or als.",
        ),
    ] = "local",
    master: Annotated[
        str | None, typer.Option("--master", help="Spark master for --engine spark.")
    ] = None,
) -> None:
    """Top-K items per user: user_id,item_id,rank,score (rank 1 is best)."""
    spec = workflows.RecommendSpec(  # checks the users, engine, master, --index and --filter
        model=model,
        users=user or (),
        all_users=all_users,
        k=k,
        exclude_seen=not include_seen,
        filters=_parse_filters(filters),
        index=cast("IndexMode | None", index),
        engine=cast(workflows.Engine, engine),
        master=master,
        output=output,
    )
    with _working(spec.describe()):
        recs = workflows.recommend(spec)
    if recs is None:
        console.print(f"Wrote the top {k} per user to {output} (Parquet)")
    elif output is not None:
        _write_table(recs, output)
    else:
        _print_frame(recs)


@app.command(
    epilog=_examples(
        'rekko query -m models/gigs --text "cute character" -k 10',
        "rekko query -m models/demo --basket i0001,i0002",
    )
)
def query(
    model: Annotated[Path, typer.Option("--model", "-m", help="A trained model folder.")],
    text: Annotated[
        str | None,
        typer.Option("--text", "-t", help='Free text, e.g. "minimalist hand-drawn logo".'),
    ] = None,
    prefer: Annotated[
        str | None,
        typer.Option("--prefer", help='Stated preferences as JSON: {"gig_design_style": "anime"}.'),
    ] = None,
    basket: Annotated[
        str | None,
        typer.Option("--basket", help="Comma-separated ids of items the visitor interacted with."),
    ] = None,
    k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, max=10_000, help="How many items.")
    ] = 10,
    filters: Annotated[
        str | None,
        typer.Option("--filter", help='Constraints as JSON, e.g. {"price": {"max": 50}}.'),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV/JSON/Parquet file.")
    ] = None,
) -> None:
    """Items for someone with no history: free text, stated preferences and/or a basket
    (item_id,rank,score). Models that read queries (content, fallback, hybrid, two-tower)
    answer with their own scoring; any other model through the shared routes (similar items,
    preferences as constraints, matching words, popularity). The route is printed."""
    preferences = None
    if prefer is not None:
        try:
            preferences = json.loads(prefer)
        except json.JSONDecodeError as error:
            raise DataError(f"--prefer must be JSON ({error.msg})") from None
    spec = workflows.QuerySpec(  # checks that something was asked
        model=model,
        text=text,
        preferences=preferences,
        basket=[part.strip() for part in (basket or "").split(",") if part.strip()],
        k=k,
        filters=_parse_filters(filters),
    )
    recs = workflows.query(spec)
    note = recs.attrs.get("note")
    errors.print(
        f"[dim]answered by: {recs.attrs['source']}" + (f" ({note})" if note else "") + "[/dim]",
        highlight=False,
    )
    if output is not None:
        _write_table(recs, output)
    else:
        _print_frame(recs)


@app.command(epilog=_examples("rekko predict -m models/mf --pairs pairs.csv -o predictions.csv"))
def predict(
    model: Annotated[Path, typer.Option("--model", "-m", help="A trained rating model folder.")],
    pairs: Annotated[Path, typer.Option("--pairs", help="CSV with user_id,item_id columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write.")],
) -> None:
    """Predicted ratings for user-item pairs: user_id,item_id,prediction."""
    _write_table(workflows.predict(model, pairs), output)


@app.command(epilog=_examples("rekko similar -m models/demo --item i0001 -k 5"))
def similar(
    model: Annotated[Path, typer.Option("--model", "-m", help="A trained model folder.")],
    item: Annotated[list[str], typer.Option("--item", help="Item id (repeat).")],
    k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, max=10_000, help="Items per item.")
    ] = 10,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV/JSON file.")] = None,
) -> None:
    """Items most similar to the given items."""
    result = workflows.similar(model, item, k)
    if output is not None:
        _write_table(result, output)
    else:
        _print_frame(result)


@app.command(
    epilog=_examples(
        "rekko evaluate --dataset demo --models popularity,ease,als -k 10 -k 20",
        "rekko evaluate --dataset demo --models ease -p ease.l2=300 "
        "--report evaluation.html --images svg",
        "rekko evaluate --recommendations recs.csv --test test.csv --train train.csv",
    )
)
@data_options()
def evaluate(
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated model names to compare.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="MODEL.key=value: a hyperparameter of one of --models (repeat)."
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="random, temporal or leave-last-out.")
    ] = "random",
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.01, max=0.99)] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    k: Annotated[
        list[int] | None, typer.Option("--top-k", "-k", min=1, help="Cut-off (repeat for several).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--relevance-threshold", help="Min rating that counts as relevant."),
    ] = None,
    recommendations: Annotated[
        Path | None, typer.Option("--recommendations", help="Score a recommendations CSV instead.")
    ] = None,
    test: Annotated[
        Path | None, typer.Option("--test", help="Test interactions CSV (with --recommendations).")
    ] = None,
    train_file: Annotated[
        Path | None,
        typer.Option(
            "--train",
            help="Training interactions CSV (with --recommendations): adds coverage, novelty "
            "and popularity.",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV or JSON table.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write an HTML report with charts (opens offline)."),
    ] = None,
    images: Annotated[
        str | None,
        typer.Option("--images", help="With --report, also write each chart as svg or png."),
    ] = None,
    tuned: Annotated[
        list[Path] | None,
        typer.Option(
            "--tuned",
            help="A model folder from 'rekko tune --output': also compare its model with its "
            "tuned parameters (repeat). Warns when the tuning saw this split's test part.",
        ),
    ] = None,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
) -> None:
    """Compare models on one split (ranking metrics, coverage, novelty, RMSE, time).

    Or score an existing recommendations file against test interactions.
    """
    from rekko.evaluation import Protocol

    protocol = Protocol(ks=tuple(k or [10]), relevance_threshold=threshold)
    if images is not None and (images not in ("svg", "png") or report is None):
        raise DataError("--images must be svg or png, and goes with --report")
    if recommendations is not None or test is not None:
        if report is not None:
            raise DataError("--report compares trained models; it does not take --recommendations")
        if recommendations is None or test is None:
            raise DataError("--recommendations and --test go together")
        result = workflows.score_recommendations(
            recommendations,
            test,
            ks=protocol.ks,
            relevance_threshold=threshold,
            train=train_file,
        )
    elif train_file is not None:
        raise DataError("--train goes with --recommendations and --test")
    else:
        settings = read_config(config)
        section = config_section(settings, "evaluate", ("models", "params"))
        names = [
            name.strip()
            for name in (models or section.get("models") or "popularity").split(",")
            if name.strip()
        ]
        chosen = _model_params(param, section.get("params", {}), names)
        spec = workflows.EvaluateSpec(
            data=data_spec(settings, data),
            models={name: chosen.get(name, {}) for name in names},
            split=split,
            test_fraction=test_fraction,
            seed=seed,
            protocol=protocol,
            report=report,
            images=cast("ImageFormat | None", images),
            tuned=tuple(tuned or ()),
        )
        count = len(spec.models) + len(spec.tuned)
        with _working(f"Evaluating {count} model(s) on a {split} split"):
            evaluated = workflows.evaluate_models(spec, loaded=_print_data)
        if evaluated.report is not None:
            console.print(f"Wrote the report to {evaluated.report}")
        result = evaluated.metrics
        for warning in evaluated.warnings:
            errors.print(f"[bold red]WARNING[/bold red] {escape(warning)}")
    _print_frame(_metrics_by_column(result), title="Evaluation")
    if output is not None:
        _write_table(result, output)


@app.command(epilog=_examples("rekko explore --dataset demo -o explore.html"))
@data_options()
def explore(
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML report to write.")],
    images: Annotated[
        str | None, typer.Option("--images", help="Also write each chart as svg or png.")
    ] = None,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
) -> None:
    """An HTML report of a data set: events, long tail, activity, time, sparsity, features."""
    spec = data_spec(read_config(config), data)
    with _working("Loading the data and drawing the report"):
        path = workflows.explore(
            spec, output, images=cast("ImageFormat | None", images), loaded=_print_data
        )
    console.print(f"Wrote the report to {path}")


@app.command(
    "split",
    epilog=_examples(
        "rekko split -i ratings.csv --train-output train.csv --test-output test.csv "
        "--split temporal"
    ),
)
@data_options(INTERACTION_OPTIONS)
def split_command(
    train_output: Annotated[
        Path, typer.Option("--train-output", help="CSV for the training part.")
    ],
    test_output: Annotated[Path, typer.Option("--test-output", help="CSV for the test part.")],
    split: Annotated[
        str, typer.Option("--split", help="random, temporal or leave-last-out.")
    ] = "random",
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.01, max=0.99)] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
) -> None:
    """Split interactions into train and test CSV files (aggregated pairs)."""
    spec = data_spec(read_config(config), data)
    with _working(f"Loading the data and splitting it ({split})"):
        parts = workflows.split(
            spec, split, test_fraction=test_fraction, seed=seed, loaded=_print_data
        )
    _write_table(parts.train, train_output)
    _write_table(parts.test, test_output)


@app.command(
    epilog=_examples(
        "rekko tune --dataset demo --model als --trials 20",
        "rekko tune --dataset demo --model auto --trials 10 -o models/best",
    )
)
@data_options()
def tune(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model name to tune, or 'auto' to tune every family and keep the best one "
            "(`rekko train -m auto` blends families instead).",
        ),
    ],
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials per model.")] = 20,
    metric: Annotated[str, typer.Option("--metric", help="What to maximise, e.g. ndcg@10.")] = (
        "ndcg@10"
    ),
    seed: Annotated[int, typer.Option("--seed")] = 42,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="The split whose test part the search leaves out (as 'rekko evaluate' makes "
            "it with the same --split, --test-fraction and --seed).",
        ),
    ] = "random",
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.01, max=0.99)] = 0.2,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Train the best model on all data here.")
    ] = None,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
) -> None:
    """Tune hyperparameters (Optuna) on an inner split of the training part only.

    The test part of --split (the one 'rekko evaluate' makes with the same flags) is left out
    of the search, so evaluating the tuned parameters there is honest.
    """
    spec = workflows.TuneSpec(
        data=data_spec(read_config(config), data),
        model=model,
        trials=trials,
        metric=metric,
        seed=seed,
        output=output,
        split=split,
        test_fraction=test_fraction,
    )
    with _working(f"Tuning {model} ({trials} trials per model)"):
        tuned = workflows.tune(spec, loaded=_print_data)
    best = tuned.best
    if tuned.summary is not None:
        _print_frame(tuned.summary.astype({"params": str}), title="Best of each family")
    else:
        _print_frame(best.trials, title=f"Trials of {model}")
    console.print(
        f"Best: [bold]{best.model}[/bold] {metric}={best.best_score:.4f} {best.best_params}"
    )
    if tuned.output is not None:
        console.print(
            f"Trained {best.model} with these parameters on all data; saved to {tuned.output}"
        )


#: Data flags that ``rekko serve`` and ``rekko import`` offer: sources with raw rows (not the
#: built-in data sets, whose rows are already aggregated).
IMPORT_OPTIONS = tuple(o.name for o in DATA_OPTIONS if o.name not in ("dataset", "data_dir"))


def _import_spec(config: dict[str, Any], data: DataFlags) -> DataSpec | None:
    """The data to import: ``[data]`` of the config overridden by the flags (``None`` when
    neither names any)."""
    if not config.get("data") and all(value is None for value in data.values()):
        return None
    return data_spec(config, data)


def _serve_data_settings(spec: DataSpec | None) -> dict[str, Any]:
    """Serve settings that follow from the data: its event weights and item feature kinds."""
    if spec is None:
        return {}
    values: dict[str, Any] = {"data": spec.model_dump(exclude_none=True)}
    if spec.event_weights is not None:
        values["event_weights"] = spec.event_weights
    kinds = spec.item_feature_kinds()
    if kinds:
        values["item_feature_kinds"] = kinds
    return values


@app.command(
    epilog=_examples(
        "rekko serve",
        "rekko serve --interactions events.csv --items items.csv --model als",
        "rekko serve -i 'mysql+pymysql://app@db/shop' --table orders --follow id",
        "rekko serve --model-path models/shop",
    )
)
@_requires_modules("fastapi", "uvicorn", "alembic", "prometheus_client")
@data_options(IMPORT_OPTIONS)
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Worker processes.")] = (
        None
    ),
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (SQLite by default).")
    ] = None,
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="Folder of model versions.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to train (default: hybrid).")
    ] = None,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
    follow: Annotated[
        str | None,
        typer.Option(
            "--follow",
            help="With --interactions URL --table T: take in T's new rows as events as the "
            "application writes them, by this column that only grows (an id or a time).",
        ),
    ] = None,
    model_path: Annotated[
        Path | None,
        typer.Option(
            "--model-path",
            help="A model folder written by rekko train / tune: registered as a version on "
            "start (once), its items checked against the catalogue, activated if it passes the "
            "quality gate.",
        ),
    ] = None,
) -> None:
    """Serve recommendations over HTTP (API docs at /docs).

    With --interactions (a file or a database table, and --items / --users: the same data
    options as rekko train, or [data] in --config) the data is imported into the service's
    database on start (only rows not imported before), the model is trained on it and
    activated, then served. Without data, on first start with an empty database, it loads the
    demo shop. Settings: flags, then REKKO_* variables, then [serve] in --config.
    """
    from rekko.service import load_settings
    from rekko.service import serve as run_service

    toml = read_config(config)
    spec = _import_spec(toml, data)
    flags = {
        "host": host,
        "port": port,
        "workers": workers,
        "database_url": database_url,
        "model_dir": model_dir,
        "model": model,
        "follow": follow,
        "model_path": model_path,
        **_serve_data_settings(spec),
    }
    settings = load_settings(toml, flags=flags)
    logging.getLogger("rekko").setLevel(logging.INFO)  # import and training progress
    if settings.data is not None:
        console.print(f"Importing {settings.data.interactions} into {settings.database_url}")
    console.print(f"Serving on http://{settings.host}:{settings.port} (API docs at /docs)")
    run_service(settings)


@app.command(
    "import",
    epilog=_examples(
        "rekko import -i events.csv --items items.csv",
        'rekko import -i "postgresql+psycopg://app@db/shop" --table orders --user-col customer',
    ),
)
@data_options(IMPORT_OPTIONS)
def import_command(
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="The service's database (default: as rekko serve)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Read the source even if its files did not change.")
    ] = False,
    config: ConfigOpt = None,
    *,
    data: DataFlags,
) -> None:
    """Import interactions (and item / user features) into a service database, without
    serving: every row is checked first, then all are stored in one transaction, or none.
    Rows imported before are not stored again.
    """
    from rekko.service import load_settings
    from rekko.store.db import create_db_engine, upgrade_database
    from rekko.store.imports import import_data

    toml = read_config(config)
    spec = _import_spec(toml, data)
    if spec is None:
        raise DataError("nothing to import: give --interactions (a file or a database URL)")
    settings = load_settings(
        toml, flags={"database_url": database_url, **_serve_data_settings(spec)}
    )
    engine = create_db_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        with _working(f"Importing {spec.interactions}"):
            upgrade_database(engine)
            report = import_data(engine, spec, event_weights=settings.weights(), force=force)
    finally:
        engine.dispose()
    console.print(report.summary(), markup=False, highlight=False)


@app.command(
    "export",
    epilog=_examples(
        "rekko export -m models/tt --format savedmodel -o export/",
        "rekko export -m models/tt --format tflite -o export-tflite/",
    ),
)
def export_command(
    model: Annotated[Path, typer.Option("--model", "-m", help="A trained model folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="savedmodel (TensorFlow) or tflite (LiteRT).")
    ] = "savedmodel",
) -> None:
    """Export a model with an export contract (factor models such as als or bpr, and the
    TensorFlow models) as a TensorFlow SavedModel or TFLite files, with a manifest."""
    from rekko.export import export_model

    if fmt not in ("savedmodel", "tflite"):
        raise DataError(f"--format must be savedmodel or tflite, got {fmt!r}")
    with console.status(f"Exporting {model} as {fmt}..."):
        path = export_model(model, fmt, output)  # type: ignore[arg-type]
    console.print(f"Exported to {path} (see manifest.json)")


@app.command("models", epilog=_examples("rekko models", "rekko models models/auto"))
def list_models(
    folder: Annotated[
        Path | None,
        typer.Argument(help="A trained model folder: show what it is and how it was chosen."),
    ] = None,
) -> None:
    """List the registered models with their abilities and parameters (or describe a folder)."""
    from dataclasses import asdict

    from rekko.models import available_models, get_model_class

    if folder is not None:
        _describe_model_folder(folder)
        return

    table = Table(title="Models")
    for column in ("name", "abilities", "parameters (defaults)"):
        table.add_column(column)
    for name in available_models():
        model_class = get_model_class(name)
        abilities = ", ".join(k for k, v in asdict(model_class.abilities).items() if v) or "-"
        params = ", ".join(  # the default a factory makes, too (hybrid's components)
            f"{key}={field.get_default(call_default_factory=True)!r}"
            for key, field in model_class.Params.model_fields.items()
        )
        table.add_row(name, abilities, params or "-")
    console.print(table)


def _describe_model_folder(folder: Path) -> None:
    """A saved model's class, data and parameters; for ``auto``, what its search tried."""
    from rekko.models import load_model

    model = load_model(folder)
    meta = model.metadata_
    console.print(
        f"[bold]{model.name}[/bold] in {folder}: trained {meta.get('trained_at', '?')} on "
        f"{meta.get('data_name', '?')} ({meta.get('n_interactions', '?')} interactions, "
        f"{meta.get('n_users', '?')} users, {meta.get('n_items', '?')} items)"
    )
    console.print(f"parameters: {json.dumps(model.params.model_dump(mode='json'))}")
    report = meta.get("auto")
    if not isinstance(report, dict):
        return
    metric = str(report.get("metric", "ndcg@10"))
    table = Table(
        title=f"Families tried on the inner split ({report['validation']['events']} held-out "
        f"interactions of {report['validation']['users']} users)"
    )
    for column in ("model", "status", f"inner {metric}", "fit s", "weight"):
        table.add_column(column)
    weights = report.get("weights", {})
    for entry in report.get("tried", []):
        score = entry.get(f"inner_{metric}")
        table.add_row(
            entry["model"],
            entry["status"],
            "-" if score is None else f"{score:.4f}",
            "-" if "fit_s" not in entry else f"{entry['fit_s']:.2f}",
            f"{weights[entry['model']]:g}" if entry["model"] in weights else "-",
        )
    console.print(table)
    blend = report.get(f"inner_{metric}")
    console.print(
        f"chosen: {', '.join(report.get('chosen', []))}"
        + ("" if blend is None else f" (blend inner {metric} {blend:.4f})")
        + f"; {report.get('fit_s', '?')} s of a {report.get('time_budget_s', '?')} s budget"
    )


@app.command(epilog=_examples("rekko demo", "rekko demo -m als --users 5 -k 10"))
def demo(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to train.")] = "ease",
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder.")] = Path(
        "models/demo"
    ),
    users: Annotated[int, typer.Option("--users", min=1, help="Users to show.")] = 3,
    k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100, help="Items per user.")] = 5,
) -> None:
    """The main job: train on the built-in demo shop, evaluate, save and recommend."""

    def show(data: Dataset) -> None:
        console.print(f"[bold]Demo shop[/bold]: {data}")

    with _working("Evaluating on a per-user 80/20 split, then training on all data"):
        result = workflows.demo(model, output, users=users, k=k, loaded=show)
    _print_frame(
        result.metrics[["model", "ndcg@10", "recall@10", "map@10", "coverage@10", "fit_s"]],
        title="Offline evaluation (demo shop, 80/20 per-user split, seed 42)",
    )
    console.print(f"Saved the {model} model trained on all data to {result.output}")
    shown = result.recommendations["user_id"].nunique()
    _print_frame(result.recommendations, title=f"Top {k} for {shown} users")


@datasets_app.command("list")
def datasets_list() -> None:
    """The built-in data sets and their loaders."""
    from rekko.data.loaders import DATASETS

    table = Table(title="Built-in data sets")
    table.add_column("name")
    table.add_column("what")
    table.add_row("demo", "A generated shop: 600 users, 400 items, view/cart/purchase events.")
    for name, entry in DATASETS.items():
        table.add_row(name, entry[1])
    console.print(table)


@datasets_app.command("download")
def datasets_download(
    variant: Annotated[str, typer.Argument(help="MovieLens variant, e.g. ml-100k.")] = "ml-100k",
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Where to keep it.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Only use the cache.")] = False,
) -> None:
    """Download a MovieLens archive (checksum verified) into the cache; print its folder."""
    from rekko.data.download import download_movielens

    with console.status(f"Fetching {variant}..."):
        folder = download_movielens(variant, cache_dir=cache_dir, offline=offline)
    console.print(str(folder))


@datasets_app.command(
    "export",
    epilog=_examples(
        "rekko datasets export demo -o shop",
        "rekko train -i shop/ratings.csv -m biased-mf -o models/mf",
    ),
)
def datasets_export(
    name: Annotated[str, typer.Argument(help="The data set to export: demo.")] = "demo",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write.")] = Path(),
) -> None:
    """Write the demo shop as CSV files: events.csv, items.csv, users.csv, ratings.csv.

    ratings.csv rates each (user, item) pair by its strongest event: view 3, cart 4, purchase 5.
    """
    from rekko.data.demo import write_demo_files

    if name != "demo":
        raise DataError(
            f"only the demo shop can be exported, not {name!r}: rekko datasets export demo"
        )
    for path in write_demo_files(output):
        console.print(str(path))


@datasets_app.command("info")
@data_options(("dataset", "data_dir", "interactions"))
def datasets_info(*, data: DataFlags) -> None:
    """Load a data set and print its summary (counts, density, cold-start shares).

    The demo shop unless --dataset or --interactions names another.
    """
    with _working("Loading the data"):
        summary = workflows.summarize(data_spec({}, data), loaded=_print_data)
    _print_frame(pd.DataFrame({"what": list(summary), "value": [str(v) for v in summary.values()]}))


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to the null device meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Loads TensorFlow with the native stderr silenced.

    Its C++ start-up lines (absl's "All log messages before absl::InitializeLog()", oneDNN's
    notice) ignore ``TF_CPP_MIN_LOG_LEVEL`` and would precede every TensorFlow command's
    output. Only the import is silenced: TensorFlow's later warnings and errors still show.
    """

    def __init__(self) -> None:
        self._used = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "tensorflow" or self._used:
            return None
        self._used = True
        spec = importlib.util.find_spec(fullname)  # the real finders, this one now passes
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        exec_module = loader.exec_module

        def exec_quietly(module: ModuleType) -> None:
            with _native_stderr_silenced():
                exec_module(module)

        loader.exec_module = exec_quietly  # type: ignore[method-assign]
        return spec


def main() -> None:
    """Console entry point: one clear line and exit code 1 (2 for usage) on errors."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Before anything imports TensorFlow: no C++ info or warning lines, no start-up notices.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.meta_path.insert(0, _QuietTensorFlowImport())
    try:
        app()
    except RekkoError as error:
        errors.print(f"error: {error}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        errors.print(
            f"error: {error.strerror}: {error.filename}", style="red", markup=False, highlight=False
        )
        sys.exit(1)
    except MemoryError:
        errors.print("error: out of memory", style="red", markup=False)
        sys.exit(1)
    except ImportError as error:  # an optional extra that is not installed
        hint = _missing_extra(error)
        if hint is None:
            raise
        errors.print(f"error: {hint}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except ValueError as error:  # a value the checks above did not name; still one line
        errors.print(f"error: {error}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
