"""Workflow-level synchronization: mutexes and ConfigMap semaphores, as Argo's controller keeps them.

Follows workflow/sync (v3.6+, v4): sync_manager.go (TryAcquire, prepAcquire, tryAcquireImpl,
Release), semaphore.go (prioritySemaphore: checkAcquire, tryAcquire, release), mutex.go (a
semaphore of limit 1), lock_name.go (lock keys), cached_limit.go and the controller's getSyncLimit
(controller.go createSynchronizationManager), and pkg/apis workflow_types.go (SemaphoreStatus and
MutexStatus: LockWaiting, LockAcquired). What it does:

- lock keys: `<namespace>/ConfigMap/<configmap>/<key>` for a semaphore, `<namespace>/Mutex/<name>`
  for a mutex (the namespace: the lock's own, else the Workflow's); a Workflow holds them under
  `<namespace>/<workflow name>`. Semaphores are taken before mutexes (allSyncItems); a duplicate
  item is refused;
- a semaphore's limit is the integer in its ConfigMap key, read from the API (as the controller,
  with no cache: semaphoreLimitCacheSeconds unset) each time it is checked; a ConfigMap or key
  that cannot be read leaves the last limit known, and a first limit of 0 fails the semaphore's
  initialisation (`failed to initialize semaphore <key> with limit`): the Workflow fails with
  `Failed to acquire the synchronization lock. <that>`;
- every lock keeps a queue ordered by priority (higher first), then creationTimestamp (older
  first); a Workflow takes its locks only when it is at the front of every queue and every lock
  has room, and then all of them at once; otherwise it takes none and waits, Pending, with the
  message `Waiting for <key> lock. Lock status: <free>/<limit>` and, in its status,
  `synchronization.semaphore.waiting` [{semaphore, holders}] (and `mutex.waiting` [{mutex,
  holder}] when a mutex is held);
- when a Workflow ends its locks are released and the waiting Workflows try again.

Not modelled: template-level locks, database locks, resizing while held beyond what re-reading the
limit gives, and a Workflow's spec.priority (our Workflows set none: 0).
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from standin.argo.workflows.model import Unsupported, WorkflowError, only
from standin.argo.workflows.templating import substitute


class SyncError(Exception):
    """TryAcquire's error: the Workflow is marked Failed with "Failed to acquire the synchronization lock. ..."."""


@dataclass(frozen=True)
class Item:
    kind: str  # Semaphore | Mutex
    key: str  # the lock key
    configmap: str = ""
    configmap_key: str = ""
    namespace: str = ""


@dataclass
class _Lock:
    item: Item
    limit: int
    holders: list[str] = field(default_factory=list)
    queue: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # holder -> (-priority, created, arrival)


_MANAGERS: "weakref.WeakKeyDictionary[object, LockManager]" = weakref.WeakKeyDictionary()
_MANAGERS_LOCK = threading.Lock()
_INT = re.compile(r"[+-]?[0-9]+")


def items(sync: dict, namespace: str, scope: dict[str, str]) -> list[Item]:
    """The lock items of `spec.synchronization`, semaphores first (allSyncItems), keys as lock_name.go makes them."""
    only(sync, {"semaphores", "mutexes"}, "spec.synchronization")
    found: list[Item] = []
    for i, sem in enumerate(sync.get("semaphores") or []):
        where = f"spec.synchronization.semaphores[{i}]"
        only(sem, {"configMapKeyRef", "namespace", "database"}, where)
        if sem.get("database") is not None:
            raise Unsupported(f"{where}.database (database semaphores) is not supported by the local runner")
        ref = sem.get("configMapKeyRef")
        if not ref:
            raise SyncError("requested configuration is invalid: cannot get LockName for a Semaphore without a "
                            "ConfigMapRef or Database")
        only(ref, {"name", "key", "optional"}, f"{where}.configMapKeyRef")
        ns = substitute(str(sem.get("namespace") or namespace), scope, where)
        name, key = substitute(str(ref.get("name") or ""), scope, where), substitute(str(ref.get("key") or ""), scope, where)
        found.append(Item("Semaphore", f"{ns}/ConfigMap/{name}/{key}", name, key, ns))
    for i, mutex in enumerate(sync.get("mutexes") or []):
        where = f"spec.synchronization.mutexes[{i}]"
        only(mutex, {"name", "namespace", "database"}, where)
        if mutex.get("database"):
            raise Unsupported(f"{where}.database (database mutexes) is not supported by the local runner")
        ns = substitute(str(mutex.get("namespace") or namespace), scope, where)
        found.append(Item("Mutex", f"{ns}/Mutex/{substitute(str(mutex['name']), scope, where)}", namespace=ns))
    if len({item.key for item in found}) != len(found):
        raise SyncError("requested configuration is invalid: duplicate synchronization item found")
    return found


class LockManager:
    """One per stand-in cluster, as the controller's syncManager is one per controller."""

    def __init__(self, read_limit: Callable[[Item], int]) -> None:
        self.read_limit = read_limit
        self.locks: dict[str, _Lock] = {}
        self.changed = threading.Condition()
        self._arrivals = 0

    @classmethod
    def of(cls, cluster: object, read_limit: Callable[[Item], int]) -> "LockManager":
        with _MANAGERS_LOCK:
            manager = _MANAGERS.get(cluster)
            if manager is None:
                manager = _MANAGERS[cluster] = cls(read_limit)
            return manager

    def _limit(self, lock: _Lock) -> int:
        """getLimit: the ConfigMap's value now, or the last one known when it cannot be read."""
        if lock.item.kind == "Mutex":
            return 1
        try:
            lock.limit = self.read_limit(lock.item)
        except Exception:  # noqa: BLE001 - cachedLimit.get keeps the last limit on any error
            pass
        return lock.limit

    def _prepare(self, holder: str, priority: int, created: str, wanted: list[Item]) -> None:
        """prepAcquire: initialise each lock (a semaphore must read a limit > 0), queue the holder."""
        for item in wanted:
            lock = self.locks.get(item.key)
            if lock is None:
                lock = _Lock(item, 0 if item.kind == "Semaphore" else 1)
                if item.kind == "Semaphore" and self._limit(lock) == 0:
                    raise SyncError(f"failed to initialize semaphore {item.key} with limit")
                self.locks[item.key] = lock
            if holder not in lock.holders and holder not in lock.queue:
                self._arrivals += 1
                lock.queue[holder] = (-priority, created, self._arrivals)

    def _check(self, lock: _Lock, holder: str) -> tuple[bool, str]:
        """checkAcquire: (acquirable or already held, the waiting message)."""
        if holder in lock.holders:
            return True, ""
        limit = self._limit(lock)
        if limit == 0:
            return False, f"Failed to get semaphore limit for {lock.item.key}"
        waiting = f"Waiting for {lock.item.key} lock. Lock status: {limit - len(lock.holders)}/{limit}"
        front = min(lock.queue, key=lock.queue.__getitem__) if lock.queue else holder
        if front != holder:
            return False, waiting
        return (True, "") if len(lock.holders) < limit else (False, waiting)

    def try_acquire(self, holder: str, priority: int, created: str, wanted: list[Item]) -> tuple[bool, str, dict]:
        """TryAcquire for a Workflow: (acquired all, message, status.synchronization)."""
        with self.changed:
            self._prepare(holder, priority, created, wanted)
            checks = [self._check(self.locks[item.key], holder) for item in wanted]
            message = next((msg for ok, msg in checks if not ok), "")
            acquired = all(ok for ok, _ in checks)
            if acquired:
                for item in wanted:
                    lock = self.locks[item.key]
                    lock.queue.pop(holder, None)
                    if holder not in lock.holders:
                        lock.holders.append(holder)
            return acquired, message, self._status(holder, wanted, acquired)

    def _status(self, holder: str, wanted: list[Item], acquired: bool) -> dict:
        """LockAcquired / LockWaiting, as status.synchronization shows them."""
        semaphore: dict[str, list] = {}
        mutex: dict[str, list] = {}
        for item in wanted:
            holders = sorted(self.locks[item.key].holders)
            if item.kind == "Semaphore":
                entry = {"semaphore": item.key, "holders": [holder] if acquired else holders}
                semaphore.setdefault("holding" if acquired else "waiting", []).append(entry)
            elif acquired:
                mutex.setdefault("holding", []).append({"mutex": item.key, "holder": holder})
            elif holders:  # MutexStatus.LockWaiting records nothing while the mutex is free
                mutex.setdefault("waiting", []).append({"mutex": item.key, "holder": holders[0]})
        status = {}
        if semaphore:
            status["semaphore"] = semaphore
        if mutex:
            status["mutex"] = mutex
        return status

    def acquire(self, holder: str, priority: int, created: str, wanted: list[Item],
                waiting: Callable[[str, dict], None], limit_seconds: float) -> dict:
        """Block until every lock is taken; `waiting(message, status)` whenever what the Workflow waits for changes."""
        deadline = time.monotonic() + limit_seconds
        shown = None
        while True:
            with self.changed:  # checked and waited for under one hold: no release goes unnoticed
                acquired, message, status = self.try_acquire(holder, priority, created, wanted)
                if acquired:
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    self._forget(holder, wanted)
                    raise WorkflowError(f"the local runner gave up after {limit_seconds:g}s: {message}")
                if (message, status) == shown:
                    self.changed.wait(min(left, 1.0))  # a release notifies; a new limit does not
                    continue
            waiting(message, status)
            shown = (message, status)

    def _forget(self, holder: str, wanted: list[Item]) -> None:
        for item in wanted:
            lock = self.locks.get(item.key)
            if lock:
                lock.queue.pop(holder, None)

    def release(self, holder: str, wanted: list[Item]) -> None:
        """Release / ReleaseAll: give up held locks and queue places, then let the waiting try again."""
        with self.changed:
            for item in wanted:
                lock = self.locks.get(item.key)
                if lock is None:
                    continue
                if holder in lock.holders:
                    lock.holders.remove(holder)
                lock.queue.pop(holder, None)
            self.changed.notify_all()


def configmap_limit(core_api) -> Callable[[Item], int]:
    """The controller's getSyncLimit: GET the ConfigMap, its key must exist, strconv.Atoi of the value."""

    def read(item: Item) -> int:
        configmap = core_api.read_namespaced_config_map(item.configmap, item.namespace)
        data = configmap.data or {}
        if item.configmap_key not in data:
            raise SyncError(f"Sync configuration key '{item.configmap_key}' not found in ConfigMap")
        value = data[item.configmap_key]
        if not _INT.fullmatch(value):
            raise SyncError(f'strconv.Atoi: parsing "{value}": invalid syntax')
        return int(value)

    return read
