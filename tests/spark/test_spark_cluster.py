"""rekko on a real Spark standalone cluster: a master and two workers, each its own process.

The master and workers are started with Spark's own launcher (``bin/spark-class``) on free
loopback ports, with their logs and work folders under the test's temporary folder, and are
stopped at the end of the module, also when a test fails.

The executors run a Python interpreter that has rekko's dependencies but not rekko (a virtual
environment made here that sees this interpreter's third-party packages, rekko left out), so
batch recommendations work only if shipping rekko to them works: ``spark_session`` adds a zip
of the running rekko on a cluster master (``docs/spark.md``). Spark settings reach the CLI as
they reach any Spark program, through ``spark-defaults.conf`` in ``$SPARK_CONF_DIR``; that is
also where the PostgreSQL JDBC driver comes from (a jar found in ``$REKKO_POSTGRESQL_JAR``, the
local Maven repository or Ivy's cache: nothing is downloaded).

``rekko train --engine spark`` and ``rekko recommend --engine spark`` run on the cluster from
CSV, Parquet and a PostgreSQL table (through rekko's command-line app, in one driver program so
that the executors start once) and must give what the same commands give on ``local[2]``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rekko.cli import app
from rekko.data.dataset import Dataset
from rekko.models import load_model

pyspark = pytest.importorskip("pyspark")

pytestmark = [pytest.mark.slow, pytest.mark.db]

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: The spark-als settings of every run here: small, so that the module stays quick.
PARAMS = ("-p", "factors=16", "-p", "iterations=5", "-p", "seed=7")
TOP_K = 10
#: Seconds for the cluster to come up, and for the driver program's commands.
START_TIMEOUT = 120
COMMAND_TIMEOUT = 420
#: Seconds for both executors to register with the driver before its first job.
EXECUTORS_TIMEOUT = 120
#: Packages the executors need and must find in their own interpreter.
EXECUTOR_PACKAGES = ("numpy", "pandas", "scipy", "pyarrow", "pydantic", "pyspark")


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster and what a driver needs to use it."""

    master: str
    python: Path  # the executors' interpreter, without rekko
    work_dirs: tuple[Path, ...]  # one per worker
    driver_env: dict[str, str]  # the environment of a driver program (rekko's CLI)
    worker_env: dict[str, str]  # the environment the master and workers run with
    logs: Path  # the master's and workers' logs

    def diagnosis(self) -> str:
        """The tails of the master's, the workers' and every executor's logs."""
        daemons = sorted(self.logs.glob("*.log"))
        executors = sorted(d for work_dir in self.work_dirs for d in work_dir.glob("*/*/stderr"))
        return "\n".join(
            [_tail(log, 15) for log in daemons]
            + [_tail(log, 15, "/".join(log.parts[-4:])) for log in executors]
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgresql_jar() -> Path:
    """The PostgreSQL JDBC driver already on this machine (never downloaded here)."""
    configured = os.environ.get("REKKO_POSTGRESQL_JAR")
    if configured:
        candidates = [Path(configured)]
    else:
        maven = Path.home() / ".m2" / "repository" / "org" / "postgresql" / "postgresql"
        ivy = [Path.home() / name / "jars" for name in (".ivy2", ".ivy2.5.2")]
        candidates = sorted(maven.glob("*/postgresql-*.jar")) + sorted(
            jar for folder in ivy for jar in folder.glob("org.postgresql_postgresql-*.jar")
        )
    found = [jar for jar in candidates if jar.is_file()]
    if not found:
        message = (
            "no PostgreSQL JDBC driver jar: set REKKO_POSTGRESQL_JAR, or fetch it once into "
            "the local Maven repository (mvn dependency:get "
            "-Dartifact=org.postgresql:postgresql:42.7.4)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[-1]


def _environment_without_rekko(folder: Path) -> Path:
    """A virtual environment that imports this interpreter's packages, except rekko.

    The venv gets a ``.pth`` file naming a folder of links to every entry of this
    interpreter's site-packages but rekko's own (its code, metadata and editable-install
    hooks); nothing is installed or downloaded.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    links = folder / "shared-packages"
    links.mkdir()
    site_packages = Path(sysconfig.get_path("purelib"))
    for entry in sorted(site_packages.iterdir()):
        name = entry.name.lower()
        if name.endswith(".pth") or "rekko" in name:
            continue
        (links / entry.name).symlink_to(entry)
    own = Path(sysconfig.get_path("purelib", vars={"base": folder, "platbase": folder}))
    (own / "shared-packages.pth").write_text(f"{links}\n")
    return folder / "bin" / "python"


def _spark_class(
    role: str, arguments: list[str], env: dict[str, str], logs: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes], Path]:
    home = Path(pyspark.__file__).parent
    log = logs / f"{role}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [str(home / "bin" / "spark-class"), *arguments],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return process, handle, log


def _wait_for(
    ready: Callable[[], bool], what: str, processes: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        dead = [process.args for process in processes if process.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(_tail(log) for log in sorted(logs.glob("*.log")))
            reason = f"exited: {dead}" if dead else f"not within {START_TIMEOUT} s"
            raise AssertionError(f"Spark cluster: {what} {reason}\n{tails}")
        time.sleep(0.2)


def _tail(log: Path, lines: int = 30, name: str = "") -> str:
    """The last lines of a log file, under its name."""
    text = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return f"--- {name or log.name}\n{text}"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master and two one-core workers on loopback, stopped when the module ends."""
    jar = _postgresql_jar()
    root = tmp_path_factory.mktemp("spark-cluster")
    python = _environment_without_rekko(root / "executor-env")
    logs = root / "logs"
    logs.mkdir()
    home = str(Path(pyspark.__file__).parent)
    base = {key: value for key, value in os.environ.items() if not key.startswith("PYSPARK_")}
    base.pop("PYTHONPATH", None)  # what the cluster's Python sees is the venv above, only
    worker_env = {
        **base,
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(logs),
        "SPARK_LOCAL_DIRS": str(root / "scratch"),
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_CONF_DIR": str(root / "cluster-conf"),
        "PYSPARK_PYTHON": str(python),
    }
    (root / "cluster-conf").mkdir()
    port = _free_port()
    master = f"spark://127.0.0.1:{port}"
    work_dirs = (root / "work-1", root / "work-2")
    processes: list[subprocess.Popen[bytes]] = []
    handles: list[IO[bytes]] = []
    try:
        process, handle, _ = _spark_class(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"),
            ],
            worker_env,
            logs,
        )
        processes.append(process)
        handles.append(handle)
        _wait_for(lambda: _accepts(port), "the master", processes, logs)
        worker_logs = []
        for number, work_dir in enumerate(work_dirs, start=1):
            process, handle, log = _spark_class(
                f"worker-{number}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    *("--host", "127.0.0.1", "--webui-port", "0"),
                    *("--cores", "1", "--memory", "1g", "--work-dir", str(work_dir)),
                    master,
                ],
                worker_env,
                logs,
            )
            processes.append(process)
            handles.append(handle)
            worker_logs.append(log)
        _wait_for(
            lambda: all(
                "Successfully registered with master" in log.read_text(errors="replace")
                for log in worker_logs
            ),
            "the two workers' registration",
            processes,
            logs,
        )
        conf = root / "driver-conf"
        conf.mkdir()
        settings = {
            "spark.jars": str(jar),
            "spark.executor.memory": "512m",
            "spark.cores.max": "2",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.local.dir": str(root / "driver-scratch"),
            "spark.ui.enabled": "false",
            # the first job waits until both executors have registered (not only the first)
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": f"{EXECUTORS_TIMEOUT}s",
        }
        (conf / "spark-defaults.conf").write_text(
            "".join(f"{key} {value}\n" for key, value in settings.items())
        )
        driver_env = {
            **os.environ,  # the driver is this interpreter, with rekko
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_CONF_DIR": str(conf),
            "PYSPARK_PYTHON": str(python),
            "COLUMNS": "200",
        }
        yield Cluster(master, python, work_dirs, driver_env, worker_env, logs)
    finally:
        for process in reversed(processes):  # workers first: they stop their executors
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for handle in handles:
            handle.close()


def invoke(*args: str) -> None:
    """A ``rekko`` command in this process, on the local Spark session."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)


# -- the data: MovieLens-100K ratings as implicit strengths, in three sources ---------------
@pytest.fixture(scope="module")
def ratings(ml100k: Dataset) -> pd.DataFrame:
    frame = ml100k.to_frame()
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(np.int64),
            "item_id": frame["item_id"].astype(np.int64),
            "value": frame["rating"].astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def sources(
    ratings: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[str]]]:
    """The ``rekko train`` data flags of the same ratings as CSV, Parquet and a SQL table."""
    import psycopg

    folder = tmp_path_factory.mktemp("sources")
    ratings.to_csv(folder / "ratings.csv", index=False)
    ratings.to_parquet(folder / "ratings.parquet", index=False)
    table = f"rekko_cluster_{uuid.uuid4().hex[:12]}"
    try:
        connection = psycopg.connect(POSTGRES_DSN, connect_timeout=5)
    except psycopg.OperationalError as error:
        message = f"no PostgreSQL server answers at 127.0.0.1:5432 ({error})"
        if os.environ.get("CI"):  # CI has the server: a missing one is a failure there
            pytest.fail(message)
        pytest.skip(message)
    with connection:
        columns = "user_id bigint, item_id bigint, value double precision"
        connection.execute(f"create table {table} ({columns})")
        with connection.cursor().copy(f"copy {table} from stdin") as copy:
            for row in ratings.itertuples(index=False):
                copy.write_row(row)
    try:
        yield {
            "csv": ["-i", str(folder / "ratings.csv")],
            "parquet": ["-i", str(folder / "ratings.parquet")],
            "postgresql": ["-i", POSTGRES_URL, "--table", table],
        }
    finally:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as connection:
            connection.execute(f"drop table if exists {table}")


def _commands(source: list[str], folder: Path, *spark: str) -> list[list[str]]:
    """``rekko train`` then ``rekko recommend --all-users``, both with the Spark engine."""
    model, recs = folder / "model", folder / "recs.parquet"
    return [
        ["train", "--engine", "spark", *spark, *source, *PARAMS, "-o", str(model)],
        [
            *("recommend", "--engine", "spark", *spark, "-m", str(model), "--all-users"),
            *("-k", str(TOP_K), "-o", str(recs)),
        ],
    ]


#: A driver program: probes where the executors' Python tasks run and whether they find rekko
#: (before anything shipped it, then after), and between the two runs ``rekko`` commands.
DRIVER = """
import json, os, sys, time
from importlib.util import find_spec
from rekko.cli import app
from rekko.spark import spark_session

def where(_):
    time.sleep(0.25)  # long enough that each of the two one-core executors takes some tasks
    return [sys.executable, os.getcwd(), find_spec("rekko") is not None]

def executors():  # registered with this driver, which lists itself too
    return len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1

def done(step):
    print(f"driver: {step} after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

started = time.monotonic()
master, plan = sys.argv[1], json.loads(sys.argv[2])
spark = spark_session(master, ship_rekko=False)
while executors() < 2:
    if time.monotonic() - started > plan["executors_timeout"]:
        sys.exit(f"driver: {executors()} of 2 executors after {plan['executors_timeout']} s")
    time.sleep(0.2)
done("both executors")
tasks = spark.sparkContext.parallelize(range(8), 8)
done("session")
before = tasks.map(where).collect()
done("first probe")
for command in plan["commands"]:
    app([*command, "--master", master], standalone_mode=False)
    done(" ".join(command[:3]))
after = tasks.map(where).collect()
with open(plan["report"], "w") as report:
    json.dump({"before": before, "after": after}, report)
"""


@dataclass(frozen=True)
class Runs:
    """What the driver program on the cluster found and wrote, and the local reference."""

    probes: dict[str, list[tuple[str, str, bool]]]  # "before" / "after" shipping rekko
    folders: dict[str, Path]  # per source: its model and recs.parquet
    local: Path  # the model and recs.parquet of the same commands on local[2], from CSV


@pytest.fixture(scope="module")
def runs(
    cluster: Cluster, sources: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Runs:
    """Train and recommend from every source on the cluster, and from the CSV on ``local[2]``.

    On the cluster, one driver program runs every command through ``rekko``'s own command-line
    app, as the console command does, so that the executors (a JVM each) start once. While it
    runs, the same commands run here on ``local[2]``.
    """
    root = tmp_path_factory.mktemp("cluster-run")
    folders = {name: root / name for name in sources}
    commands = [
        command for name, flags in sources.items() for command in _commands(flags, folders[name])
    ]
    plan = {
        "commands": commands,
        "report": str(root / "probes.json"),
        "executors_timeout": EXECUTORS_TIMEOUT,
    }
    log = root / "driver.log"
    local = tmp_path_factory.mktemp("local")
    with log.open("w") as output:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, cluster.master, json.dumps(plan)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cluster.driver_env,
        )
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            for command in _commands(sources["csv"], local, "--master", "local[2]"):
                invoke(*command)
            code = driver.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the driver ran over {COMMAND_TIMEOUT} s\n{_tail(log)}") from None
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(timeout=30)
    assert code == 0, f"{_tail(log)}\n{cluster.diagnosis()}"
    probes = json.loads((root / "probes.json").read_text())
    return Runs(probes, folders, local)


# -- the tests -------------------------------------------------------------------------------
def test_the_executors_python_has_the_dependencies_but_not_rekko(cluster: Cluster) -> None:
    def run(code: str) -> subprocess.CompletedProcess[str]:
        command = [str(cluster.python), "-c", code]
        return subprocess.run(command, capture_output=True, text=True, env=cluster.worker_env)

    done = run("import rekko")
    assert done.returncode != 0 and "No module named 'rekko'" in done.stderr, done.stderr
    done = run(f"import {', '.join(EXECUTOR_PACKAGES)}")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("when", "finds_rekko"), [("before", False), ("after", True)])
def test_executors_on_both_workers_run_that_python_and_find_rekko_once_shipped(
    cluster: Cluster, runs: Runs, when: str, finds_rekko: bool
) -> None:
    tasks = runs.probes[when]
    assert {Path(python) for python, _, _ in tasks} == {cluster.python}, tasks
    assert {found for _, _, found in tasks} == {finds_rekko}, tasks
    ran_in = {
        work_dir
        for _, cwd, _ in tasks
        for work_dir in cluster.work_dirs
        if Path(cwd).is_relative_to(work_dir)
    }
    assert ran_in == set(cluster.work_dirs), f"tasks ran in {tasks}\n{cluster.diagnosis()}"


@pytest.mark.parametrize("source", ["csv", "parquet", "postgresql"])
def test_train_and_recommend_on_the_cluster_as_on_local(
    source: str,
    cluster: Cluster,
    runs: Runs,
    same_rankings: Callable[..., None],
) -> None:
    folder = runs.folders[source]
    ours, theirs = load_model(folder / "model"), load_model(runs.local / "model")
    assert ours.metadata_["spark_master"] == cluster.master
    assert theirs.metadata_["spark_master"] == "local[2]"
    assert ours.users_ is not None and theirs.users_ is not None
    assert ours.items_ is not None and theirs.items_ is not None
    assert ours.seen_ is not None and theirs.seen_ is not None
    np.testing.assert_array_equal(ours.users_.external_ids, theirs.users_.external_ids)
    np.testing.assert_array_equal(ours.items_.external_ids, theirs.items_.external_ids)
    assert (ours.seen_ != theirs.seen_).nnz == 0

    cluster_recs = pd.read_parquet(folder / "recs.parquet")
    local_recs = pd.read_parquet(runs.local / "recs.parquet")
    assert len(cluster_recs) == len(local_recs) == len(ours.users_) * TOP_K
    same_rankings(cluster_recs, local_recs)
