"""Where a run's chunked work goes: a Prefect task runner chosen by the configuration's `runner` section.

The stages in `tasks/` cut their per-image work into chunks and hand them to a `tasks.chunks.ChunkMap`;
`TaskRunnerChunks` is that map for a flow: each chunk becomes a Prefect task run on threads, processes or a
Dask cluster, visible in the Prefect UI like any other task run.
"""

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from tasks.config import RunnerConfig


def concurrent_chunks(config: RunnerConfig) -> int:
    """How many chunks the runner for `config` runs at once: `workers`, by default one per core (for an
    existing Dask cluster, the cluster decides; this is then the local machine's guess)."""
    return config.workers or os.cpu_count() or 1


def task_runner(config: RunnerConfig) -> TaskRunner:
    """A new (not yet started) task runner for `config`."""
    workers = concurrent_chunks(config)
    if config.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if config.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner  # imported only when asked for: it loads dask and distributed

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    # One thread per worker process: a chunk uses threads of its own (decoding) or fastdup's, or is one of as many
    # verification chunks as there are workers.
    # Loopback only, and no dashboard (it needs bokeh, which Curate does not install).
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
        "dashboard_address": None,
    })


class TaskRunnerChunks:
    """A `tasks.chunks.ChunkMap` that runs each chunk as a Prefect task run on a started task runner."""

    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner

    def __call__(self, name: str, function: Callable[..., Any], chunks: Sequence[Any], **shared: Any) -> list[Any]:
        chunk_task = task(function, name=name, cache_policy=NO_CACHE)
        chunk_parameter = next(iter(inspect.signature(function).parameters))
        futures = [
            self.runner.submit(chunk_task, parameters={chunk_parameter: chunk, **shared}) for chunk in chunks
        ]
        return [future.result() for future in futures]


@contextlib.contextmanager
def chunk_map(config: RunnerConfig) -> Iterator[TaskRunnerChunks]:
    """Start the configured task runner for the duration of a run, and yield its chunk map."""
    with task_runner(config) as runner:
        yield TaskRunnerChunks(runner)
