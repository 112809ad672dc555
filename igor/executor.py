"""Where handlers run: a bounded pool of worker threads, and one asyncio loop.

Every sync handler, and every ``asyncio.to_thread`` (or ``out.asend`` that
must wait) of an async one, runs on the same :class:`WorkerPool` of at most
``max_workers`` threads, whatever the number of clients: past that, work
waits its turn instead of starting a thread. The dispatcher bounds what each
client may put here (``max_streams``), so the queue is bounded too.

The loop (:class:`EventLoop`) runs every ``async def`` handler; a handler
that blocks it (a ``time.sleep`` where it should await) stalls them all, so
the loop is watched, and a block over a second is logged with its name.
"""

from __future__ import annotations

# asyncio is imported where async handlers need it, not here: it adds about
# 8 MiB to every process, which an app with only sync handlers need not pay.
import concurrent.futures
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional, Protocol, Set, Tuple

if TYPE_CHECKING:
    import asyncio

__all__ = ["WorkerPool", "EventLoop", "Slots", "current_slots", "off_loop", "BLOCKED_LOOP_WARNING"]

log = logging.getLogger("igor")

#: Seconds an async handler may hold the shared loop before it is named in a warning.
BLOCKED_LOOP_WARNING = 1.0

Task = Callable[[], None]


class Slots(Protocol):
    """One client's share of the threads: what an async handler's ``to_thread`` is charged to."""

    def take_thread(self) -> bool: ...

    def give_thread(self) -> None: ...


#: The client whose async handler is running, so that its ``to_thread`` calls count against its share.
current_slots: contextvars.ContextVar[Optional[Slots]] = contextvars.ContextVar("igor_slots", default=None)


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """``await asyncio.to_thread(fn, *args)`` for Igor's own waits, charged to no client.

    A handler's ``to_thread`` counts against its client's threads; Igor's
    (a send waiting for room, an error sent to a slow client) must not fail
    because the handler used them all.
    """
    import asyncio

    token = current_slots.set(None)
    try:
        return await asyncio.to_thread(fn, *args)
    finally:
        current_slots.reset(token)


class WorkerPool:
    """At most ``max_workers`` threads; an idle one takes the next task, else a new one starts, else it waits.

    Work that waits sits in a backlog tagged with its owner (a client), so
    that a client who leaves takes its waiting work with it: the backlog
    holds only what connected clients may queue. Idle threads end after
    ``idle_timeout`` seconds without work, except ``keep`` of them, started
    with the server, so that a call after a quiet spell does not wait for a
    thread to start.
    """

    def __init__(self, max_workers: int, idle_timeout: float, keep: int = 1):
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.keep = keep
        # Hands a task to an idle worker (a C-level queue: the common path costs no Python lock dance).
        self._handoff: queue.SimpleQueue[Optional[Task]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting on the hand-off that no task is promised to yet
        self._backlog: Deque[Tuple[Any, Task, Optional[Task]]] = deque()  # (owner, task, instead if dropped)
        self._threads: Set[threading.Thread] = set()

    def start(self) -> None:
        """Start the ``keep`` workers that wait for calls from the first one on."""
        for _ in range(self.keep):
            with self._lock:
                self._idle += 1
                thread = self._new_thread(None)
            thread.start()

    def submit(self, task: Task, owner: Any = None, dropped: Optional[Task] = None) -> None:
        """Run ``task`` on a worker; if it must wait and :meth:`drop` takes it, ``dropped`` runs instead."""
        thread = None
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                thread = self._new_thread(task)
            else:
                self._backlog.append((owner, task, dropped))
                return
        if thread is not None:
            thread.start()
        else:
            self._handoff.put(task)

    def drop(self, owner: Any) -> None:
        """Take ``owner``'s waiting work out of the backlog, running what each asked for instead."""
        with self._lock:
            if not self._backlog:
                return
            mine = [entry for entry in self._backlog if entry[0] is owner]
            if not mine:
                return
            self._backlog = deque(entry for entry in self._backlog if entry[0] is not owner)
        for _, _, dropped in mine:
            if dropped is not None:
                dropped()

    def _new_thread(self, task: Optional[Task]) -> threading.Thread:
        # Called with the lock held, so the count is right before the thread runs.
        thread = threading.Thread(target=self._work, args=(task,), name="igor-worker", daemon=True)
        self._threads.add(thread)
        return thread

    def _work(self, task: Optional[Task]) -> None:
        while True:
            if task is not None:
                try:
                    task()
                except BaseException:  # noqa: B036 - a worker outlives what it runs
                    log.exception("a task on an Igor worker failed")
                task = None  # drop the finished call's references before waiting for the next
                with self._lock:
                    if self._backlog:
                        task = self._backlog.popleft()[1]
                        continue
                    self._idle += 1
            task = self._next_task()
            if task is None:
                break
        with self._lock:
            self._threads.discard(threading.current_thread())

    def _next_task(self) -> Optional[Task]:
        """Wait for work as an idle worker; None once idle for too long (or stopped)."""
        while True:
            try:
                return self._handoff.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    # submit() counts on idle workers under this lock: leave
                    # only if it has not promised this worker a task meanwhile,
                    # and never below the workers kept.
                    if self._idle > 0 and self._handoff.empty() and len(self._threads) > self.keep:
                        self._idle -= 1
                        self._threads.discard(threading.current_thread())
                        return None

    def owns(self, thread: threading.Thread) -> bool:
        with self._lock:
            return thread in self._threads

    def threads(self) -> int:
        with self._lock:
            return len(self._threads)

    def busy(self) -> int:
        """Threads running a task now."""
        with self._lock:
            return len(self._threads) - self._idle

    def stop(self, deadline: float) -> List[threading.Thread]:
        """End idle workers now and wait until ``deadline`` for busy ones; returns those still busy."""
        with self._lock:
            dropped = list(self._backlog)
            self._backlog.clear()
            for _ in range(len(self._threads)):
                self._handoff.put(None)
            self._idle = 0
            threads = list(self._threads)
        for _, _, instead in dropped:
            if instead is not None:
                instead()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread in threads if thread.is_alive() and thread is not threading.current_thread()]


class _PoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor: ``asyncio.to_thread`` on the worker pool, charged to the calling client.

    asyncio's own default (a ThreadPoolExecutor of ``cpus + 4`` threads) would
    let a few blocked sends stall every async handler, its threads are
    joined at interpreter exit (so a sleeping one holds the exit), and they
    are not counted against anyone.
    """

    # A ThreadPoolExecutor only because asyncio accepts nothing else as the default; it starts
    # none of its own threads, since every method that would is replaced here.

    def __init__(self, pool: WorkerPool, too_many: Callable[[], BaseException]):
        super().__init__(max_workers=1)
        self._pool = pool
        self._too_many = too_many
        self.submitted = 0  # how much the loop handed to threads: a measure of how often it had to

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        slots = current_slots.get()
        if slots is not None and not slots.take_thread():
            raise self._too_many()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.submitted += 1

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # noqa: B036 - handed to the awaiting coroutine
                        future.set_exception(exc)
            finally:
                if slots is not None:
                    slots.give_thread()

        def dropped() -> None:
            future.cancel()
            if slots is not None:
                slots.give_thread()

        self._pool.submit(run, slots, dropped)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the pool is the server's, and stops with it


class EventLoop:
    """One asyncio loop on a thread of its own, started on the first ``async def`` call."""

    def __init__(self, pool: WorkerPool, too_many: Callable[[], BaseException]) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._pool = pool
        self._too_many = too_many
        self._executor: Optional[_PoolExecutor] = None
        self._beat = 0.0  # when the loop last ran its watchdog callback
        self._warned = False

    def run(self, coroutine: Any) -> bool:
        """Schedule ``coroutine`` as a task; False (and it is closed) once the loop has stopped."""
        import asyncio

        with self._lock:
            if self._stopped:
                coroutine.close()
                return False
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._executor = _PoolExecutor(self._pool, self._too_many)
                self._loop.set_default_executor(self._executor)
                self._thread = threading.Thread(target=self._loop.run_forever, name="igor-asyncio", daemon=True)
                self._beat = time.monotonic()
                self._loop.call_soon_threadsafe(self._watchdog)
                self._thread.start()
            asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            return True

    def _watchdog(self) -> None:
        self._beat = time.monotonic()
        self._warned = False
        self._loop.call_later(BLOCKED_LOOP_WARNING / 4, self._watchdog)

    def check(self, now: float) -> None:
        """Warn, naming the handler, when the loop has not turned for over a second (the heartbeat calls this)."""
        loop = self._loop
        if loop is None or self._stopped or self._warned or now - self._beat <= BLOCKED_LOOP_WARNING:
            return
        import asyncio

        self._warned = True
        task = asyncio.current_task(loop)
        log.warning("%s has blocked the event loop every async handler shares for %.1fs: use "
                    "await asyncio.to_thread(...) for blocking work", task.get_name() if task else "a callback",
                    now - self._beat)

    def owns(self, thread: threading.Thread) -> bool:
        return thread is self._thread

    @property
    def offloaded(self) -> int:
        """Calls the loop has handed to threads so far (``to_thread``, sends that had to wait for room)."""
        return self._executor.submitted if self._executor is not None else 0

    def stop(self, deadline: float) -> List[str]:
        """Cancel what still runs, then stop the loop by ``deadline``; returns the handlers that would not end."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._stopped = True
        if loop is None:
            return []
        import asyncio

        left: List[str] = []

        async def drain() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=max(0.01, deadline - time.monotonic()))
                left.extend(task.get_name() for task in pending)

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(max(0.01, deadline - time.monotonic()))
        except (concurrent.futures.TimeoutError, RuntimeError):
            # The loop itself is blocked: whatever runs on it now is what would not end.
            task = asyncio.current_task(loop)
            left.append(task.get_name() if task is not None else "a callback blocking the event loop")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive() or left:
            # Abandoned: the interpreter's exit collects its tasks, and must not print a warning for each.
            loop.set_exception_handler(lambda loop, context: log.debug("abandoned: %s", context.get("message")))
        else:
            loop.close()
        return left
