"""Start a command child through libc's ``posix_spawn``, as the pool needs
it: in a directory, in a session of its own, stdin on ``/dev/null``, its
output on one descriptor, one more descriptor kept, every other one closed,
and every signal at its default and none blocked.

Why not ``subprocess.Popen``: its Python side (the pipe it sets up and
reads, a ``fsencode`` per variable name and value, the executable list)
made a start cost the supervisor's thread ~0.23 ms of CPU, against ~0.17
ms here, most of it the kernel's clone (``benchmarks/bench_spawn_steps.py``);
at ten thousand sessions coming up on cores the children's execs already
fill, each 0.1 ms per spawn is over a second of bring-up.  And why not
``os.posix_spawn``: it can neither change directory (glibc's
``posix_spawn_file_actions_addchdir_np``) nor close the descriptors it does
not know of (``addclosefrom_np``).

The signals: ``Popen`` restores only the three Python itself ignores
(SIGPIPE and SIGXFSZ), so a supervisor started under ``nohup`` gave
every child SIGHUP ignored, and a shell child cannot even ``trap`` a signal
ignored at its start.  Here each child starts with every disposition at its
default and an empty signal mask, as a systemd service does, whatever the
process that embeds the pool ignores or blocks.

Only where libc has every call used (glibc 2.34 and later); elsewhere
:data:`AVAILABLE` is false and the caller uses ``Popen``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["AVAILABLE", "hand_off", "spawn"]

# what os.fsencode encodes with (fixed for the life of the interpreter)
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()

# <spawn.h> (glibc): the attribute flags used
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# posix_spawnattr_t is 336 bytes and posix_spawn_file_actions_t 80 on
# glibc's 64-bit ABIs, sigset_t 128: opaque to us, given room to spare
_ATTR_SIZE = 1024
_ACTIONS_SIZE = 512
_SIGSET_SIZE = 256


class _Libc:
    """libc's functions, and the one attribute object every spawn shares
    (the flags and signal sets never change)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.spawn = libc.posix_spawn
        self.init = libc.posix_spawn_file_actions_init
        self.destroy = libc.posix_spawn_file_actions_destroy
        self.addopen = libc.posix_spawn_file_actions_addopen
        self.adddup2 = libc.posix_spawn_file_actions_adddup2
        self.addchdir = libc.posix_spawn_file_actions_addchdir_np
        self.addclosefrom = libc.posix_spawn_file_actions_addclosefrom_np
        every, none = (
            ctypes.create_string_buffer(_SIGSET_SIZE),
            ctypes.create_string_buffer(_SIGSET_SIZE),
        )
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        # Every bit, not sigfillset(): that leaves out the two signals
        # glibc's threads use (32 and 33), which its posix_spawn then
        # gives the child ignored where Popen's child has them default.
        ctypes.memset(every, 0xFF, _SIGSET_SIZE)
        failed = (
            libc.sigemptyset(none)
            or libc.posix_spawnattr_init(attr)
            or libc.posix_spawnattr_setsigdefault(attr, every)
            or libc.posix_spawnattr_setsigmask(attr, none)
            or libc.posix_spawnattr_setflags(
                attr, ctypes.c_short(_SETSIGDEF | _SETSIGMASK | _SETSID)
            )
        )
        if failed:
            raise OSError(ctypes.get_errno(), "cannot set up posix_spawn's attributes")
        self.attr = attr


def _load() -> _Libc | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _Libc()
    except (AttributeError, OSError):  # a libc without one of the calls
        return None


_LIBC = _load()
#: whether :func:`spawn` can be used here
AVAILABLE = _LIBC is not None


class _HandOff(threading.local):
    #: the lock this thread gives up while libc starts its child
    lock: threading.Lock | None = None


_HAND_OFF = _HandOff()


def hand_off(lock: threading.Lock | None) -> None:
    """While this thread's :func:`spawn` waits in libc, let ``lock`` go
    (None: keep whatever the thread holds).

    ``posix_spawn`` returns only once the child has exec'd (glibc clones
    with ``CLONE_VFORK``): 1.3 ms a child while two thousand come up on two
    cores, more than all the supervisor's own CPU for a spawn (~0.8 ms).
    The pool's threads that start a batch of children hold one lock for all
    their Python, and each gives it up for exactly that wait (ctypes lets
    the GIL go too), so the next spawn is prepared, and the one before
    finished, while a child execs.  Only a thread that is never interrupted
    by a signal handler may take part: the lock is taken back
    unconditionally."""
    _HAND_OFF.lock = lock


_DEVNULL = b"/dev/null"
_NOT_HERE = (errno.ENOENT, errno.ENOTDIR)


def _high(fd: int) -> tuple[int, bool]:
    """``fd``, or a copy of it above the three standard descriptors (a
    supervisor started with those closed opens its logs there), so that
    setting up the child's 0, 1 and 2 cannot overwrite it; and whether a
    copy was made (the caller closes it)."""
    if fd > 2:
        return fd, False
    import fcntl  # a supervisor started without stdio: rare

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), True


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None,
    out_fd: int | None,
    keep_fd: int | None,
) -> int:
    """Start ``argv`` and return its pid.

    ``argv[0]`` is looked up on the ``PATH`` of ``env`` when it has no
    slash, as ``Popen`` does.  The child's stdin is ``/dev/null``; its
    stdout and stderr are ``out_fd`` (None: ``/dev/null``); ``keep_fd``, if
    given, is its descriptor 3; it has no other descriptor.  Raises OSError
    when the child could not be started (the directory or the program is
    missing, not allowed, not executable): libc reports the errno of the
    step that failed, so the error names the directory when that is what
    is missing."""
    lib = _LIBC
    if lib is None:
        raise OSError("posix_spawn with a working directory is not available here")
    made: list[int] = []
    actions = ctypes.create_string_buffer(_ACTIONS_SIZE)
    if lib.init(actions):
        raise OSError(ctypes.get_errno(), "posix_spawn_file_actions_init failed")
    try:
        if out_fd is None:
            failed = lib.addopen(actions, 1, _DEVNULL, os.O_WRONLY, 0) or lib.adddup2(actions, 1, 2)
        else:
            out_fd, copied = _high(out_fd)
            if copied:
                made.append(out_fd)
            failed = lib.adddup2(actions, out_fd, 1) or lib.adddup2(actions, out_fd, 2)
        failed = failed or lib.addopen(actions, 0, _DEVNULL, os.O_RDONLY, 0)
        first_closed = 3
        if keep_fd is not None:
            keep_fd, copied = _high(keep_fd)
            if copied:
                made.append(keep_fd)
            # equal descriptors: glibc clears close-on-exec (POSIX's rule)
            failed = failed or lib.adddup2(actions, keep_fd, 3)
            first_closed = 4
        failed = failed or lib.addclosefrom(actions, first_closed)
        if cwd is not None:
            failed = failed or lib.addchdir(actions, os.fsencode(cwd))
        if failed:
            raise OSError(failed, os.strerror(failed))
        return _run(lib, actions, argv, env, cwd)
    finally:
        lib.destroy(actions)
        for fd in made:
            os.close(fd)


def _array(strings: Sequence[str]) -> Any:
    """A NULL-terminated ``char *[]`` of ``strings``, each encoded as
    ``os.fsencode`` encodes it.  Raises ValueError, as ``Popen`` does, for a
    string with a NUL in it (C would cut it there)."""
    count = len(strings)
    arr = (ctypes.c_char_p * (count + 1))()
    if count:
        # One encode of them all, cut at the NULs: a fsencode (a Python
        # call) per string was ~11 us of a spawn's 40-odd variables, this
        # is ~2.  A NUL inside a string shows as one piece too many.
        parts: list[Any] = "\0".join(strings).encode(_FS_ENCODING, _FS_ERRORS).split(b"\0")
        if len(parts) != count:
            raise ValueError("embedded null byte")
        arr[:count] = parts
    return arr


def _run(
    lib: _Libc, actions: Any, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
) -> int:
    if any("=" in name for name in env):
        raise ValueError("illegal environment variable name")
    args = _array(argv)
    envp = _array([f"{k}={v}" for k, v in env.items()])
    program = argv[0]
    if "/" in program:
        candidates = [os.fsencode(program)]
    else:
        dirs = os.get_exec_path(env)
        candidates = [os.fsencode(os.path.join(d, program)) for d in dirs]
    where = os.fsencode(cwd) if cwd is not None else b""
    pid = ctypes.c_int()
    error = 0
    last = errno.ENOENT
    for path in candidates:
        # a stat, where a try would be a whole clone; a relative entry of
        # PATH is looked at from the child's directory, as it will be
        if len(candidates) > 1 and not os.path.exists(os.path.join(where, path)):
            continue
        # the event os.posix_spawn raises: a host's audit hooks see each
        # start as they would through os or subprocess
        sys.audit("os.posix_spawn", path, argv, env)
        lock = _HAND_OFF.lock
        if lock is None:
            rc = lib.spawn(ctypes.byref(pid), path, actions, lib.attr, args, envp)
        else:
            lock.release()
            try:
                rc = lib.spawn(ctypes.byref(pid), path, actions, lib.attr, args, envp)
            finally:
                lock.acquire()
        if rc == 0:
            return pid.value
        # as Popen: every directory is tried, and what is said if none
        # runs is the first error that was not "no such file here"
        last = rc
        if not error and rc not in _NOT_HERE:
            error = rc
    error = error or last
    raise OSError(error, os.strerror(error), _culprit(error, program, cwd))


def _culprit(error: int, program: str, cwd: str | None) -> str:
    """What a failed start is said to be about: libc gives only the errno,
    which is the directory's when the child could not change into it, or
    /dev/null's, not the program's.  Looked at only once a start failed."""
    if cwd is not None and error in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
        try:
            st = os.stat(cwd)
        except OSError:
            return cwd
        if not stat.S_ISDIR(st.st_mode) or not os.access(cwd, os.X_OK):
            return cwd
    if error in (errno.ENOENT, errno.EACCES) and not os.access(_DEVNULL, os.R_OK | os.W_OK):
        return os.fsdecode(_DEVNULL)
    return program
