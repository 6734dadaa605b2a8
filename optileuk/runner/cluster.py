"""Evaluating candidates on Dask distributed: a local cluster of device slots, or the user's cluster.

* ``runner: {workers: N}`` / ``{devices: ..., trials_per_device: k}``: a ``LocalCluster`` with one
  single-threaded worker process per device slot. A ``cuda:N`` slot's process sees only that GPU
  (``CUDA_VISIBLE_DEVICES`` is set before torch loads) and declares a ``GPU`` resource, as
  dask-cuda does. With ``runner.listen`` its scheduler accepts workers from other machines.
* ``runner: {scheduler: tcp://host:8786}`` (or a scheduler file): a cluster the user started
  (``dask scheduler`` + ``dask worker``, dask-jobqueue on Slurm/PBS/SGE/LSF, one worker per GPU).

Every worker receives an :class:`ObjectiveHost` plugin that builds and prepares the objective
once (data, caches, tensors on its device) and keeps it for every candidate it evaluates. A
worker that dies mid-candidate loses nothing: Dask runs the candidate again on another worker,
and only the driver writes finished trials, so it is stored once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import dask
from distributed import Client, KilledWorker, LocalCluster, Nanny, WorkerPlugin, as_completed, get_worker
from distributed.core import Status
from distributed.worker_memory import parse_memory_limit
from optuna.trial import TrialState

from optileuk.errors import ConfigError, OptileukError, Problem
from optileuk.runner._common import RunFailed
from optileuk.runner._executors import Executor, Job
from optileuk.runner._outcome import Outcome, PruneContext, evaluate_candidate, run_objective_many

DEVICE_ENV = "OPTILEUK_DEVICE"  # a worker's device (cpu, cuda:0, ...): set per local worker, or by hand
LOCAL_ENV = "OPTILEUK_LOCAL_WORKER"  # set on the driver's own workers: Ctrl+C is the driver's to handle
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
SPAWN_VARS = (*THREAD_VARS, "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")  # what Dask's nannies write into the driver
# Dask settings of the local cluster (not of a cluster the user started). One candidate at a time per
# worker, queued on the scheduler: work stealing has nothing to balance; the 10 ms sampling profiler
# and the 20 ms event-loop health tick cost CPU next to CPU-bound candidates (0.5 s per 14 s run on 2
# cores, benchmarks/parallel.py).
LOCAL_SCHEDULER_CONFIG = {"distributed.scheduler.work-stealing": False, "distributed.admin.tick.interval": "500ms"}
LOCAL_WORKER_CONFIG = {"distributed": {"worker": {"profile": {"enabled": False}}, "admin": {"tick": {"interval": "500ms"}}}}


def device_slots(devices: Any, trials_per_device: int, workers: int | None) -> list[str]:
    """One device per worker process: ``auto`` = every CUDA device (else the CPU).

    ``workers`` spreads that many processes round-robin over the devices.

    Example:
        >>> device_slots(["cuda:0", "cuda:1"], 2, None)
        ['cuda:0', 'cuda:0', 'cuda:1', 'cuda:1']
    """
    if devices in (None, "auto"):
        devices = [f"cuda:{i}" for i in range(cuda_device_count())] or ["cpu"]
    elif devices == "cpu":
        devices = ["cpu"]
    slots = [d for d in devices for _ in range(trials_per_device)]
    if workers is not None:
        slots = [slots[i % len(slots)] for i in range(workers)]
    return slots


_GPU_NODES = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")  # NVIDIA, WSL2, ROCm


def cuda_device_count() -> int:
    """CUDA devices torch would see here. On Linux with no GPU driver node (:data:`_GPU_NODES`) that
    is 0 without importing torch, which costs the driver of a CPU-only study 1.4 s on 2 cores."""
    if "torch" not in sys.modules and sys.platform.startswith("linux") and not any(map(os.path.exists, _GPU_NODES)):
        return 0
    import torch

    return torch.cuda.device_count()


def check_slots(slots: Sequence[str], source: str) -> None:
    """Refuse CUDA devices this machine does not have (before any worker starts)."""
    wanted = sorted({s for s in slots if s.startswith("cuda")})
    if not wanted:
        return
    have = cuda_device_count()
    bad = [s for s in wanted if (int(s.split(":")[1]) if ":" in s else 0) >= have]
    if bad:
        raise ConfigError([Problem(source, "runner.devices", f"names CUDA devices this machine does not have "
                                   f"({have} CUDA device(s) here)", bad[0])])


@dataclass
class ObjectiveSpec:
    """How a worker builds the study's objective (pickled to every worker)."""

    cls: type
    config: Any
    space: Any
    seed: int
    objectives: list[str] | None = None

    def build(self, device: str | None):
        config = self.config
        if device and "device" in type(config).model_fields:
            config = config.model_copy(update={"device": device})
        objective = self.cls(config, space=self.space, seed=self.seed, objectives=self.objectives)
        objective.prepare()
        return objective


class ObjectiveHost(WorkerPlugin):
    """Worker plugin: the prepared objective of one study, built on first use and kept."""

    def __init__(self, spec: ObjectiveSpec, name: str):
        self.spec, self.name = spec, name
        self._objective = None
        self._lock = threading.Lock()
        self.builds = 0  # how often this worker built (and prepared) the objective: once

    def __getstate__(self) -> dict[str, Any]:  # what travels to the workers: the recipe, not the objective
        return {"spec": self.spec, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["name"])

    def setup(self, worker) -> None:
        if os.environ.get(LOCAL_ENV) == "1" and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its own workers
        if "MALLOC_TRIM_THRESHOLD_" in os.environ:
            _large_allocations_without_mmap()

    @property
    def device(self) -> str | None:
        return os.environ.get(DEVICE_ENV) or None

    def objective(self):
        with self._lock:
            if self._objective is None:
                self._objective = self.spec.build(self.device)
                self.builds += 1
            return self._objective

    def evaluate(self, config: dict[str, Any], prune: PruneContext | None) -> Outcome:
        outcome = evaluate_candidate(self.objective(), config, prune)
        outcome.attrs.setdefault("worker", self._where())
        return outcome

    def evaluate_many(self, configs: list[dict[str, Any]]) -> list[Outcome]:
        outcomes = run_objective_many(self.objective(), configs)
        for outcome in outcomes:
            outcome.attrs.setdefault("worker", self._where())
        return outcomes

    def _where(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{self.device or 'default'}"


def _large_allocations_without_mmap() -> None:
    """Undo what Dask's nanny does to glibc's allocator in the worker it spawns.

    The nanny sets ``MALLOC_TRIM_THRESHOLD_`` before it starts a worker, which turns off glibc's
    dynamic mmap threshold: every large block (torch's CPU tensors) is then mmap-ed and unmapped
    again, which made DKNN training 2.1x slower here (23.6 s instead of 11.2 s per candidate).
    Raising both thresholds at run time restores the speed (11.3 s). Linux/glibc only.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: glibc's largest dynamic value
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD: twice that, as glibc keeps them
    except (OSError, AttributeError):  # not glibc: its allocator was not changed either
        pass


def evaluate_task(host: str, config: dict[str, Any], prune: PruneContext | None) -> Outcome:
    """The Dask task: evaluate one candidate with the worker's prepared objective."""
    plugin = get_worker().plugins.get(host)
    if plugin is None:
        raise RuntimeError(f"worker has no optileuk plugin '{host}' (is optileuk installed on it?)")
    return plugin.evaluate(config, prune)


def evaluate_batch_task(host: str, configs: list[dict[str, Any]]) -> list[Outcome]:
    """The Dask task of an objective that ``batches``: several candidates in one ``evaluate_many`` call."""
    plugin = get_worker().plugins.get(host)
    if plugin is None:
        raise RuntimeError(f"worker has no optileuk plugin '{host}' (is optileuk installed on it?)")
    return plugin.evaluate_many(configs)


def _local_cluster(slots: Sequence[str], listen: str | None):
    """A LocalCluster with one single-threaded worker process per slot, each pinned to its device."""
    host, port = _listen(listen)
    cpu_slots = sum(1 for s in slots if s == "cpu")
    threads = max(1, (os.cpu_count() or 1) // max(cpu_slots, 1))  # the cores shared out, not oversubscribed
    memory = parse_memory_limit("auto", 1, len(slots), logger=logging.getLogger("distributed"))
    # the nanny merges its config shallowly into Dask's: hand it a whole, deep-merged "distributed" section
    worker_config = {"distributed": dask.config.merge(dask.config.get("distributed"), LOCAL_WORKER_CONFIG["distributed"])}

    class _SlotCluster(LocalCluster):
        def new_worker_spec(self):
            i = len(self.worker_spec)
            slot = slots[i]
            cuda = slot.startswith("cuda")
            env = {DEVICE_ENV: "cuda:0" if cuda else slot, LOCAL_ENV: "1",
                   # read before torch loads in the worker: it sees only its own GPU, as cuda:0
                   "CUDA_VISIBLE_DEVICES": (slot.split(":")[1] if ":" in slot else "0") if cuda else ""}
            options = {**self.new_spec["options"], "env": env, "memory_limit": memory, "config": worker_config,
                       "pre_spawn": {v: threads if slot == "cpu" else 1 for v in THREAD_VARS}}
            if cuda:
                options["resources"] = {"GPU": 1}
            return {f"{slot}/{i}": {"cls": SlotNanny, "options": options}}

    with dask.config.set(LOCAL_SCHEDULER_CONFIG):
        cluster = _SlotCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
                               host=host, scheduler_port=port, silence_logs=logging.CRITICAL)
    _quiet_failed_starts(cluster)
    cluster.scale(len(slots))
    return cluster


def _quiet_failed_starts(cluster) -> None:
    """A worker that fails to start is handled (:class:`LocalWorkers`), not printed as a stray asyncio
    error ("Task exception was never retrieved ... Nanny failed to start worker process")."""
    loop = cluster.loop.asyncio_loop
    previous = loop.get_exception_handler()

    def quiet(loop, context) -> None:
        if "failed to start worker" in str(context.get("exception", "")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet)


class SlotNanny(Nanny):
    """A nanny whose worker starts with its own thread counts and glibc's default allocator settings
    (Dask's default ``MALLOC_TRIM_THRESHOLD_`` is left out: see :func:`_large_allocations_without_mmap`).

    Set here, after Dask's own reading: Dask prefers a value already in the driver's environment,
    and every nanny copies its values into the driver's environment when it spawns a worker -- a
    second cluster in one process would otherwise inherit the first one's thread counts."""

    def __init__(self, *args, pre_spawn: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        mine = {k: str(v) for k, v in pre_spawn.items()}
        self.pre_spawn_env = {**_without_trim(self.pre_spawn_env), **mine}
        self.env = {**_without_trim(self.env), **mine}

    async def kill(self, timeout: float = 5, reason: str = "nanny-kill") -> None:
        """Stop the worker process within 0.1 s instead of a graceful retire (0.27 s): by then it holds
        nothing the driver needs -- results are back and the driver writes every trial."""
        await super().kill(timeout=min(timeout, 0.1), reason=reason)


def _without_trim(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "MALLOC_TRIM_THRESHOLD_"}


def _listen(listen: str | None) -> tuple[str, int]:
    """``runner.listen`` -> (host, port): ``tcp://0.0.0.0:8786``, ``0.0.0.0:8786`` or ``:8786``."""
    if not listen:
        return "127.0.0.1", 0
    text = listen.split("://", 1)[-1]
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


def connect(scheduler: str, source: str, timeout: float = 15):
    """A client of the cluster at ``scheduler`` (an address or a scheduler file); a user error if unreachable."""
    def unreachable(reason: str) -> ConfigError:
        return ConfigError([Problem(source, "runner.scheduler", f"cannot reach the Dask scheduler ({reason})", scheduler)])

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if os.path.isfile(scheduler):
        kwargs = {"scheduler_file": scheduler}
    else:
        kwargs = {"address": scheduler}
        host, _, port = scheduler.split("://", 1)[-1].rpartition(":")
        if not port.isdigit():
            raise ConfigError([Problem(source, "runner.scheduler", "must be an address such as tcp://host:8786 "
                                       "or an existing scheduler file", scheduler)])
        try:  # a refused connection fails now, not after Dask's connect timeout
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
        except OSError as exc:
            raise unreachable(str(exc) or type(exc).__name__) from None
    try:
        return Client(timeout=timeout, set_as_default=False, **kwargs)
    except (OSError, TimeoutError, ValueError) as exc:
        raise unreachable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None


START_ATTEMPTS = 3  # tries per local worker slot before it is given up


def _failure(nanny) -> str:
    """What a local worker that did not start said: its start-up error and its process's exit code."""
    exc = getattr(nanny, "_Server__startup_exc", None)
    process = getattr(getattr(nanny, "process", None), "process", None)
    code = getattr(process, "exitcode", None)
    parts = [f"{type(exc).__name__}: {exc}" if exc else "", f"worker process exit code {code}" if code is not None else ""]
    return "; ".join(p for p in parts if p) or "it stopped while starting"


class LocalWorkers:
    """Keeps a local cluster's workers coming: a worker that dies while it starts (out of memory while
    importing, a CUDA error, killed) is started again, up to :data:`START_ATTEMPTS` times per slot.
    Dask's own nanny restarts a worker that dies after it started; this covers the start itself,
    which the nanny gives up on (:func:`_quiet_failed_starts` keeps the cluster's loop from printing
    them as stray errors)."""

    def __init__(self, cluster, client, n: int):
        self.cluster, self.client, self.n = cluster, client, n
        self.tries: dict = {}
        self.errors: dict[str, str] = {}

    def heal(self) -> None:
        failed = [name for name, w in list(self.cluster.workers.items()) if w.status in (Status.failed, Status.closed)]
        for name in failed:
            self.errors[str(name)] = _failure(self.cluster.workers[name])
            self.tries[name] = self.tries.get(name, 0) + 1
            del self.cluster.workers[name]
            if self.tries[name] >= START_ATTEMPTS:
                self.cluster.worker_spec.pop(name, None)
        if failed and self.cluster.worker_spec:
            self.cluster.scale(len(self.cluster.worker_spec))  # the lost ones are started again
        if not self.cluster.worker_spec:
            raise RunFailed(_start_failed(self.errors, self.n))

    def wait_first(self, timeout: float = 300) -> None:
        """Return once one worker is ready: candidates start at once, the others join as they come up."""
        deadline = time.monotonic() + timeout
        while not self.client.scheduler_info(n_workers=-1)["workers"]:
            self.heal()
            if time.monotonic() > deadline:
                raise RunFailed(_start_failed(self.errors or {"all": f"none ready after {timeout:.0f} s"}, self.n))
            time.sleep(0.05)

    def close(self) -> None:
        """Nothing to undo: the quiet exception handler goes with the cluster's loop."""


def _start_failed(errors: dict[str, str], n: int) -> str:
    seen = "; ".join(f"{name}: {text}" for name, text in list(errors.items())[:3]) or "none reported one"
    text = (f"no local Dask worker could be started ({n} slot(s), {START_ATTEMPTS} tries each): {seen}; what "
            "the worker processes printed before they stopped (an out-of-memory or CUDA error, ...) is above")
    if any("bootstrapping phase" in e or "freeze_support" in e for e in errors.values()):
        text += (" -- when calling the runner from your own script, guard it with if __name__ == '__main__': "
                 "worker processes import the main module")
    return text


def register(client, plugin, name: str, attempts: int = START_ATTEMPTS) -> None:
    """Register a worker plugin; a worker lost while it sets the plugin up (killed, out of memory) is
    left to its nanny, which starts it again (the scheduler gives it the plugin when it joins)."""
    from distributed.comm.core import CommClosedError

    for attempt in range(attempts):
        try:
            client.register_plugin(plugin, name=name)
            return
        except (CommClosedError, OSError, EOFError) as exc:
            if attempt + 1 == attempts:
                raise RunFailed(f"the Dask workers were lost {attempts} times while they set up the objective "
                                f"({type(exc).__name__}: {exc})") from None
            time.sleep(0.5)


class DaskExecutor(Executor):
    """Candidates as Dask tasks, one per candidate, returned as they finish. For an objective that
    ``batches`` (scores a population faster in one call), jobs submitted together without a pruner
    go as one task per worker slot, each evaluating its share with ``evaluate_many``.

    Args:
        spec: how workers build the objective.
        name: the worker plugin's name (one per study and objective).
        slots: device slots of a local cluster (ignored with ``scheduler``).
        scheduler: address or scheduler file of a cluster the user started.
        listen: where the local cluster's scheduler listens (so machines joined by hand can add workers).
        source: the study file, for messages.
    """

    def __init__(self, spec: ObjectiveSpec, name: str, *, slots: Sequence[str] = (), scheduler: str | None = None,
                 listen: str | None = None, source: str = ""):
        self.spec, self.name, self.slot_list = spec, name, list(slots)
        self.scheduler, self.listen, self.source = scheduler, listen, source
        self.cluster = self.client = None
        self._jobs: dict[str, list[Job]] = {}  # future key -> its job(s)
        self._back: collections.deque[tuple[Job, Outcome]] = collections.deque()  # returned by a batch, not yet taken
        self._done = None
        self._prune: tuple[PruneContext | None, Any] = (None, None)
        self._resources: dict[str, int] | None = None
        self._slots_cache = (0.0, 1)
        self._driver_env = {k: os.environ.get(k) for k in SPAWN_VARS}
        self._local: LocalWorkers | None = None

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> "DaskExecutor":
        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            if self.scheduler:
                self.client = self._connect()
            else:
                self.cluster = _local_cluster(self.slot_list, self.listen)
                self.client = self._client(self.cluster)
                self._local = LocalWorkers(self.cluster, self.client, len(self.slot_list))
                self._local.wait_first()
                self._restore_driver_env()
            register(self.client, ObjectiveHost(self.spec, self.name), self.name)
            if self.scheduler and self._cluster_has_gpus() and "device" in type(self.spec.config).model_fields:
                self._resources = {"GPU": 1}  # one candidate per GPU on workers that declare them
        except BaseException:
            self.close()
            raise
        self._done = as_completed(loop=self.client.loop)
        return self

    @staticmethod
    def _client(cluster):
        return Client(cluster, set_as_default=False)

    def _connect(self):
        return connect(self.scheduler, self.source)

    def _cluster_has_gpus(self) -> bool:
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return any(w.get("resources", {}).get("GPU") for w in workers)

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing after a Ctrl+C or a lost scheduler: nothing more to do
                    pass
        self.client = self.cluster = None
        self._restore_driver_env()

    def _restore_driver_env(self) -> None:
        """Undo the nannies' writes into this process's environment (torch, BLAS and later
        subprocesses of the driver keep the settings they had)."""
        for key, value in self._driver_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def describe(self) -> str:
        if self.client is None:
            return "dask (not started)"
        n = len(self.client.scheduler_info(n_workers=-1)["workers"])
        where = self.client.scheduler.address
        if self.cluster is not None:
            text = f"Dask LocalCluster at {where}: {n} worker(s) on {', '.join(self.slot_list)}"
            if self.listen:
                text += f" (other machines join with: dask worker {where} --nthreads 1)"
            return text
        return f"Dask scheduler {where}: {n} worker(s)"

    # ---- work ---------------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        when, n = self._slots_cache
        if time.monotonic() - when > 2.0:  # workers may join or leave a user's cluster
            if self._local is not None:
                self._local.heal()  # a local worker that died while starting is started again
            info = self.client.nthreads()
            if self._resources:
                workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
                n = sum(int(w.get("resources", {}).get("GPU", 0)) for w in workers)
            else:
                n = sum(info.values())
            n = max(n, 1)  # no worker yet: one candidate waits for the first to arrive
            self._slots_cache = (time.monotonic(), n)
        return n

    @property
    def in_flight(self) -> int:
        return sum(len(jobs) for jobs in self._jobs.values()) + len(self._back)

    @property
    def ready(self) -> bool:
        return bool(self._back) or (self._done is not None and self._done.has_ready())

    def submit(self, jobs: Sequence[Job], prune: PruneContext | None = None) -> None:
        if self._local is not None:
            self._local.heal()  # a local worker that died while starting is started again
        if prune is None and len(jobs) > 1 and getattr(self.spec.cls, "batches", False):
            n = min(len(jobs), self.slots)
            for i in range(n):
                share = list(jobs[i::n])
                fut = self.client.submit(evaluate_batch_task, self.name, [j.config for j in share], pure=False,
                                         resources=self._resources)
                self._jobs[fut.key] = share
                self._done.add(fut)
            return
        arg = self._prune_arg(prune)
        for job in jobs:
            fut = self.client.submit(evaluate_task, self.name, job.config, arg, pure=False, resources=self._resources)
            self._jobs[fut.key] = [job]
            self._done.add(fut)

    def _prune_arg(self, prune: PruneContext | None):
        """The pruner's history goes to the cluster once per version, not once per candidate."""
        if prune is None:
            return None
        if self._prune[0] is not prune:
            self._prune = (prune, self.client.scatter(prune, hash=False))
        return self._prune[1]

    def next_done(self) -> tuple[Job, Outcome]:
        if not self._back:
            fut = next(self._done)
            jobs = self._jobs.pop(fut.key)
            outcomes = self._outcomes(fut, len(jobs))
            self._back.extend(zip(jobs, outcomes))
        return self._back.popleft()

    def _outcomes(self, fut, n: int) -> list[Outcome]:
        """The outcome of each of the future's ``n`` jobs (one task of one job, or a batch)."""
        if fut.status == "finished":
            result = fut.result()
            return result if isinstance(result, list) else [result]
        failed = self._failure(fut)
        return [Outcome(failed.state, None, {}, failed.error) for _ in range(n)]

    def _failure(self, fut) -> Outcome:
        exc = fut.exception()
        if isinstance(exc, OptileukError):
            raise exc  # a user error (bad data path on a worker, ...): the run stops with its message
        if isinstance(exc, KilledWorker):
            text = ("the worker evaluating this candidate died each time it was tried "
                    "(killed, out of host memory, or crashed)")
        else:
            text = f"{type(exc).__name__}: {exc}"
        return Outcome(TrialState.FAIL, None, {}, text[:1000])

    def cancel(self) -> None:
        if self.client is not None and self._jobs:
            try:
                self.client.cancel(list(self._done.futures))
            except Exception:
                pass
        self._jobs.clear()
        self._back.clear()
        self._done = as_completed(loop=self.client.loop)


@contextlib.contextmanager
def cpu_cluster(workers: int | None, scheduler: str | None, on_ready: Callable[[str], None] | None = None):
    """A Dask client for work other than a study's candidates (``optileuk predict`` batches,
    ``optileuk assess`` parts): ``workers`` local single-threaded CPU worker processes (the cores
    shared out; started as :class:`LocalWorkers`), or the cluster at ``scheduler``. Closed on exit."""
    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = client = None
    try:
        if scheduler:
            client = connect(scheduler, "--scheduler")
        else:
            cluster = _local_cluster(device_slots("cpu", 1, workers), None)
            client = Client(cluster, set_as_default=False)
            LocalWorkers(cluster, client, workers).wait_first()
        if on_ready:
            n = len(client.scheduler_info(n_workers=-1)["workers"])
            on_ready(f"{n} Dask worker(s) at {client.scheduler.address}")
        yield client
    finally:
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing after an error or Ctrl+C: nothing more to do
                    pass


def results(client, futures, what: Callable[[Any], str]):
    """``(future, result)`` as each finishes; a user error on a worker stops with its message, any other
    failure with ``what(future)`` named."""
    for fut in as_completed(list(futures), loop=client.loop):
        if fut.status != "finished":
            exc = fut.exception()
            if isinstance(exc, OptileukError):
                raise exc
            raise RunFailed(f"{what(fut)} failed on a worker: {type(exc).__name__}: {exc}")
        yield fut, fut.result()
