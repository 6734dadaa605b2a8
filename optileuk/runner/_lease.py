"""One driver per study: a lease held in the study's storage.

``optileuk run`` takes the study's lease (study system attr ``optileuk:lease``: host, pid, since,
last heartbeat) before it evaluates anything and renews it from a background thread every
``BEAT_S`` seconds, however long a candidate takes. A second driver on the same study stops with
exit code 2 naming the holder. A lease is stale -- and taken over -- when its holder stopped
renewing it for ``STALE_S`` seconds, or at once when the holder ran on this machine and its
process is gone (a killed driver re-run on the same machine goes on immediately).

On Optuna's RDB storages taking, renewing and giving back a lease are conditional writes (an
``INSERT`` that the unique key of ``study_system_attributes`` lets only one driver win, then
``UPDATE ... WHERE value_json = <what was read>``), so two drivers starting at the same moment
cannot both win. Journal and in-memory storages have no such write: there the lease is written,
read back after a short pause and given up if someone else's is there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from optuna.storages import BaseStorage, InMemoryStorage

from optileuk.errors import OptileukError
from optileuk.storage import rdb_of

LEASE_KEY = "optileuk:lease"
BEAT_S = 10.0  # seconds between two renewals
STALE_S = 60.0  # a lease not renewed for this long is taken over


class LeaseHeld(OptileukError):
    """Another live driver holds the study."""


class LeaseLost(OptileukError):
    """This driver's lease was taken over (its heartbeats stopped for too long)."""


class Lease:
    """The lease of one study for this process.

    Args:
        storage: the study's storage (the raw one, not Optuna's cache).
        study_id, study_name, url: the study (for messages).
        source: the study file (for messages).
    """

    def __init__(self, storage: BaseStorage, study_id: int, study_name: str, url: str, source: str):
        self.storage, self.study_id, self.name, self.url, self.source = storage, study_id, study_name, url, source
        self.token = uuid.uuid4().hex
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.since = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._rdb = rdb_of(storage)
        self._held: str | None = None  # the JSON text of our lease as stored (for conditional writes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    # ---- taking and giving back ----------------------------------------------------------------
    def refuse_if_held(self) -> None:
        """Raise :class:`LeaseHeld` if a live driver holds the study (reads only)."""
        _, holder = self._read()
        if holder is not None and live(holder):
            raise LeaseHeld(self._held_message(holder))

    def acquire(self) -> "Lease":
        for _ in range(5):
            text, holder = self._read()
            if holder is not None and holder.get("token") != self.token and live(holder):
                raise LeaseHeld(self._held_message(holder))
            if self._write(text, self._record()):
                break
        else:
            _, holder = self._read()
            raise LeaseHeld(self._held_message(holder or {}))
        self._thread = threading.Thread(target=self._beat, name=f"optileuk-lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BEAT_S)
        if self._held is not None and self._lost is None:
            try:
                self._write(self._held, {"released": True, "by": f"{self.host}:{self.pid}",
                                         "at": dt.datetime.now().astimezone().isoformat(timespec="seconds")})
            except Exception:  # the storage went away: the lease goes stale on its own
                pass
        self._held = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another driver took the study over."""
        if self._lost is not None:
            raise LeaseLost(self._lost)

    # ---- the heartbeat -------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                if not self._write(self._held, self._record()):
                    _, holder = self._read()
                    self._lost = (f"{self.source}: study '{self.name}' in {self.url} was taken over by "
                                  f"{_who(holder or {})}; this run stops (its finished trials are saved)")
                    return
            except Exception:  # a database hiccup: try again at the next beat (the lease lasts STALE_S)
                continue

    def _record(self) -> dict[str, Any]:
        return {"token": self.token, "host": self.host, "pid": self.pid, "since": self.since, "beat": time.time()}

    # ---- storage access ------------------------------------------------------------------------
    def _read(self) -> tuple[str | None, dict[str, Any] | None]:
        if self._rdb is None:
            value = self.storage.get_study_system_attrs(self.study_id).get(LEASE_KEY)
            return (None if value is None else json.dumps(value)), value
        from sqlalchemy import select

        S = _table()
        with self._rdb.engine.connect() as conn:
            text = conn.execute(select(S.c.value_json).where(S.c.study_id == self.study_id, S.c.key == LEASE_KEY)).scalar()
        return text, (None if text is None else json.loads(text))

    def _write(self, expected: str | None, value: dict[str, Any]) -> bool:
        """Write ``value`` if the stored lease is still ``expected`` (``None``: absent); True if written."""
        text = json.dumps(value)
        if self._rdb is None:
            if self._read()[0] != expected:
                return False
            self.storage.set_study_system_attr(self.study_id, LEASE_KEY, value)
            if "token" in value and not isinstance(self.storage, InMemoryStorage):  # one process only: no race
                time.sleep(0.2)
                _, now = self._read()
                if (now or {}).get("token") != self.token:
                    return False
            self._held = text
            return True
        from sqlalchemy import exc, insert, update

        S = _table()
        try:
            with self._rdb.engine.begin() as conn:
                if expected is None:
                    conn.execute(insert(S).values(study_id=self.study_id, key=LEASE_KEY, value_json=text))
                    ok = True
                else:
                    ok = conn.execute(update(S).where(S.c.study_id == self.study_id, S.c.key == LEASE_KEY,
                                                      S.c.value_json == expected).values(value_json=text)).rowcount == 1
        except exc.IntegrityError:  # another driver inserted it first
            return False
        if ok:
            self._held = text
        return ok

    def _held_message(self, holder: dict[str, Any]) -> str:
        age = time.time() - float(holder.get("beat", 0))
        return (f"{self.source}: study '{self.name}' in {self.url} is being run by {_who(holder)} "
                f"(last heartbeat {age:.0f} s ago). One driver per study: wait for it to finish, or stop it; a "
                f"lease not renewed for {STALE_S:.0f} s (a killed driver) is taken over by the next run")


def _table():
    from optuna.storages._rdb import models

    return models.StudySystemAttributeModel.__table__


def _who(holder: dict[str, Any]) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"


def live(holder: dict[str, Any]) -> bool:
    """Whether a stored lease still holds its study."""
    if holder.get("released") or "token" not in holder:
        return False
    if time.time() - float(holder.get("beat", 0)) > STALE_S:
        return False
    if holder.get("host") == socket.gethostname():
        return _alive(int(holder.get("pid", -1)))
    return True


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
