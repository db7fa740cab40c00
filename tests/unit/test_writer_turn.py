"""SQLite writers of one process take their turn first come, first served (portal.database._WriterTurn).

Deterministic: each step waits for the state it needs (a thread queued, a thread inside), never for time.
"""
import threading

from portal.database import _WriterTurn

WAIT = 30  # seconds a step may wait for another thread before the test fails


def until(condition) -> None:
    done = threading.Event()
    for _ in range(WAIT * 1000):
        if condition():
            return
        done.wait(0.001)
    raise AssertionError("the other threads never got there")


def test_waiting_writers_go_in_the_order_they_came():
    turn = _WriterTurn(timeout=WAIT)
    order, release = [], threading.Event()

    def writer(name: str, hold: threading.Event = None):
        with turn():
            order.append(name)
            if hold is not None:
                hold.wait(WAIT)

    first = threading.Thread(target=writer, args=("first", release))
    first.start()
    until(lambda: order == ["first"])
    others = []
    for name in ("second", "third", "fourth"):
        thread = threading.Thread(target=writer, args=(name,))
        thread.start()
        others.append(thread)
        until(lambda count=len(others): len(turn._queue) == count)  # queued behind, in this order
    release.set()
    for thread in (first, *others):
        thread.join(WAIT)
    assert order == ["first", "second", "third", "fourth"]
    assert turn._holder is None and not turn._queue


def test_only_one_writer_at_a_time_and_the_turn_is_never_lost():
    turn = _WriterTurn(timeout=WAIT)
    inside, most, lock = [0], [0], threading.Lock()

    def writer():
        for _ in range(200):
            with turn():
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert most[0] == 1 and turn._holder is None and not turn._queue


def test_a_nested_write_keeps_the_turn():
    turn = _WriterTurn(timeout=WAIT)
    with turn():
        with turn():
            assert turn._holder == threading.get_ident()
        assert turn._holder == threading.get_ident()
    assert turn._holder is None


def test_a_writer_not_given_its_turn_in_time_goes_on_and_leaves_the_line():
    """As without turns: SQLite's own lock and busy timeout decide for it."""
    turn = _WriterTurn(timeout=0.01)
    release, went = threading.Event(), threading.Event()
    def hold():
        with turn():
            release.wait(WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    until(lambda: turn._holder is not None)

    def late():
        with turn():
            went.set()

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(WAIT)
    assert went.is_set() and not turn._queue
    release.set()
    holder.join(WAIT)
    assert turn._holder is None and not turn._queue


def _hold_the_turn(turn: _WriterTurn, inside, go) -> None:
    with turn():
        inside.set()
        go.wait(WAIT)


def test_serving_processes_take_turns_through_the_lock_file(tmp_path):
    """A forked worker holds the turn: the lock file is locked against every other open of it, and
    free again (and no descriptor left open) once the worker lets go."""
    import fcntl
    import multiprocessing
    import os

    path = str(tmp_path / "portal.db.writers")
    turn = _WriterTurn(timeout=WAIT, lock_path=path)
    open_before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):  # the parent takes turns before forking, as serve's parent may
        with turn():
            pass
    assert len(os.listdir("/proc/self/fd")) == open_before, "a turn left its lock file open"
    fork = multiprocessing.get_context("fork")
    inside, go = fork.Event(), fork.Event()
    worker = fork.Process(target=_hold_the_turn, args=(turn, inside, go))
    worker.start()
    try:
        assert inside.wait(WAIT), "the worker never got its turn"
        other = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                raise AssertionError("the lock file was free while a worker held the turn")
        finally:
            os.close(other)
    finally:
        go.set()
        worker.join(WAIT)
    assert worker.exitcode == 0
    other = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the worker let go
    finally:
        os.close(other)


def test_without_a_lock_file_path_turns_stay_within_the_process():
    turn = _WriterTurn(timeout=WAIT)
    with turn():
        assert turn._between_processes() is None and turn._holder is not None
    assert turn._holder is None
