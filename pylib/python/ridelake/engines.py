"""Where the slices of a silver run run: ``build_silver(..., engine=...)``.

A rebuild is planned and committed by the process that calls ``build_silver`` (the driver: it
holds the silver lease, pins the bronze versions, decides the users and stages their files). Its
rides are cut into slices (ranges of the ride id), and each slice is decided by a worker through
``ridelake.run_slice``: the worker reads bronze as the driver pinned it, checks its rides against
the users files the driver staged, writes Parquet files and returns their Delta add actions. The
driver commits every table in one transaction each, rides last. An incremental run whose changes
exceed the memory budget (or given ``slices``) fans out the same way: the driver decides the users
and stages the partitions it rewrites, each worker opens silver as the driver found it (the
versions are in its task), reads the increment and decides its slice, and the driver rewrites
the partitions the slices' rides leave and commits. A smaller increment is decided in the driver.

- ``"local"`` (the default): the slices run one after another in the driver.
- ``"ray"`` or ``RayEngine(...)``: one Ray task per slice, on the cluster ``ray.init`` connects
  to (``RAY_ADDRESS``, or a local one). Workers need ``ridelake`` installed, the same model file
  (``model=`` or ``RIDELAKE_MODEL``, with the ``city_names`` file next to it when it names one)
  and access to the lake; storage options given to ``build_silver`` travel with the tasks,
  otherwise workers read their own ``AWS_*`` variables.
- ``"spark"`` or ``SparkEngine(spark)``: one Spark task per slice (``mapInArrow`` over a range of
  task indexes, so it runs on Spark Connect too), on the given session or the active one (else
  ``SparkSession.builder.getOrCreate()``). Spark's Delta writer is not used: the driver commits.
  Executors need ``ridelake``, ``pyarrow`` and ``pandas`` (Spark's Arrow functions require it) in
  the Python they run (``PYSPARK_PYTHON``).
- any callable ``engine(tasks, work) -> outputs``: ``tasks`` is a list of JSON texts, ``work`` a
  picklable function of one task that returns its output text; the engine must return one output
  per task (in any order).

Nothing starts until a run has slices to run: an increment decided at once, or a run with nothing
new, does not touch Ray or Spark. A task may run more than once (an engine retrying a worker that
died): a retry writes new files and only the output returned is committed; files of a lost
attempt are never referenced, and ``ridelake.maintain`` vacuums them.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, Union

from ridelake import _native

Work = Callable[[str], str]
EngineFn = Callable[[Sequence[str], Work], Sequence[str]]
Engine = Union[str, EngineFn, None]


def slice_worker(task: str, *, lake: str, namespace: str, storage_options: dict[str, str] | None, model: str | None) -> str:
    """Runs one slice task of the lake (the worker half); returns its output as a JSON text."""
    return _native.run_slice(lake, task, namespace, storage_options, model=model)


def _apply(work: Work, task: str) -> str:
    return work(task)


class RayEngine:
    """Runs each slice as a Ray task.

    ``address``: the cluster ``ray.init`` connects to when Ray is not initialized yet, at the first
    sliced run (``None``: ``RAY_ADDRESS``, else a local cluster). ``num_cpus`` and ``memory`` (bytes)
    are what each task asks Ray for; size ``memory`` like ``build_silver``'s ``memory_budget``, which
    sets the slices. ``max_retries``: how often Ray runs a slice again when its worker dies.
    ``scheduling_strategy``: Ray's, e.g. ``"SPREAD"`` to put the slices on as many nodes as it can.
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, memory: int | None = None, max_retries: int = 3,
                 scheduling_strategy: str = "DEFAULT") -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.memory = memory
        self.max_retries = max_retries
        self.scheduling_strategy = scheduling_strategy

    def start(self) -> None:
        """Connects to the cluster unless Ray is initialized already."""
        try:
            import ray
        except ImportError:
            ray = None
        if not hasattr(ray, "is_initialized"):  # missing, or another module of that name
            raise _native.ConfigError("engine='ray' needs the ray package in this environment (pip install ray), and on every worker")
        if not ray.is_initialized():
            ray.init(address=self.address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)

    def __call__(self, tasks: Sequence[str], work: Work) -> list[str]:
        self.start()
        import ray

        options: dict[str, Any] = {"num_cpus": self.num_cpus, "max_retries": self.max_retries, "scheduling_strategy": self.scheduling_strategy}
        if self.memory is not None:
            options["memory"] = self.memory
        remote = ray.remote(**options)(_apply)
        work_ref = ray.put(work)
        return list(ray.get([remote.remote(work_ref, task) for task in tasks]))

    def __repr__(self) -> str:
        return (f"RayEngine(address={self.address!r}, num_cpus={self.num_cpus}, memory={self.memory}, max_retries={self.max_retries}, "
                f"scheduling_strategy={self.scheduling_strategy!r})")


class SparkEngine:
    """Runs each slice as a Spark task.

    ``spark``: the ``SparkSession`` to run on (``None``: the active session, else
    ``SparkSession.builder.getOrCreate()``, which follows ``spark-defaults.conf`` and
    ``SPARK_REMOTE``). The tasks are the rows of ``spark.range(n)`` in ``n`` partitions, one slice
    each, decided in ``mapInArrow`` and collected to the driver; Spark runs a failed task again
    (``spark.task.maxFailures``; ``local[N,F]`` in local mode) and a job that gives up fails the
    run before any data commit.
    """

    def __init__(self, spark: Any = None) -> None:
        self.spark = spark

    def session(self) -> Any:
        """The session the slices run on."""
        if self.spark is not None:
            return self.spark
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise _native.ConfigError("engine='spark' needs the pyspark package in this environment (pip install pyspark), "
                                      "and ridelake, pyarrow and pandas on every executor") from None
        return SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()

    def __call__(self, tasks: Sequence[str], work: Work) -> list[str]:
        tasks = list(tasks)
        if not tasks:
            return []
        frame = self.session().range(0, len(tasks), 1, len(tasks)).mapInArrow(functools.partial(_decide_batches, work, tasks),
                                                                               "output string")
        return [row["output"] for row in frame.collect()]

    def __repr__(self) -> str:
        return f"SparkEngine(spark={self.spark!r})"


def _decide_batches(work: Work, tasks: list[str], batches: Any) -> Any:
    """``mapInArrow``'s function: the output of each task whose index is in the batches."""
    import pyarrow as pa

    for batch in batches:
        outputs = [work(tasks[index]) for index in batch.column(0).to_pylist()]
        yield pa.RecordBatch.from_arrays([pa.array(outputs, pa.string())], names=["output"])


def resolve(engine: Engine) -> EngineFn | None:
    """The engine function ``engine`` names (``None`` for the local engine)."""
    if engine is None or engine == "local":
        return None
    if engine == "ray":
        return RayEngine()
    if engine == "spark":
        return SparkEngine()
    if callable(engine):
        return engine
    raise _native.ConfigError(f"engine must be 'local', 'ray', 'spark' or a callable engine(tasks, work), not {engine!r}")


def runner(engine: Engine, *, lake: str, namespace: str, storage_options: dict[str, str] | None, model: str | os.PathLike[str] | None) -> Callable[[list[str]], list[str]] | None:
    """The callable the native build calls with a run's slice tasks, or ``None`` (local)."""
    function = resolve(engine)
    if function is None:
        return None
    # Workers may run in another folder: local paths are made absolute. They get the model the
    # driver reads (the argument, else RIDELAKE_MODEL) by path.
    lake = lake if "://" in lake else os.path.abspath(lake)
    model = model if model is not None else (os.environ.get("RIDELAKE_MODEL") or None)
    model_path = None if model is None else os.path.abspath(os.fspath(model))
    work = functools.partial(slice_worker, lake=lake, namespace=namespace, storage_options=storage_options, model=model_path)

    def run(tasks: list[str]) -> list[str]:
        return list(function(tasks, work))

    return run
