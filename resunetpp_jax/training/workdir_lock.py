"""One training run per workdir: a lock held for as long as the run lasts.

Two runs on one workdir delete each other's checkpoints in progress. The lock is
`fcntl.flock` on WORKDIR/train.lock, which the operating system releases when the
holding process ends, however it ends: a crash or SIGKILL leaves no stale lock to
remove by hand. The file records its holder (process id, host, start time) for the
refusal to name; it is never deleted (deleting a lock file another process is
about to lock would let two runs in). In a multi-host run the workdir is shared:
process 0 takes the lock and every process learns whether it got it.
"""
from collections.abc import Iterator
import contextlib
import fcntl
import os
import socket
import time

import jax
from jax.experimental import multihost_utils

from resunetpp_jax import errors
from resunetpp_jax.runtime import outputs

LOCK_FILE = 'train.lock'


class WorkdirInUseError(errors.UserError):
  """Another process is training into the same workdir."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the run, or raises WorkdirInUseError on every process."""
  with contextlib.ExitStack() as stack:
    error = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(_flock(workdir))
      except WorkdirInUseError as e:
        error = e
    if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(error is None):
      error = error or WorkdirInUseError(f'{workdir} is in use by another training run (process 0 found it locked).')
    if error:
      raise error
    yield


@contextlib.contextmanager
def _flock(workdir: str) -> Iterator[None]:
  """Holds WORKDIR/train.lock, or raises WorkdirInUseError naming its holder."""
  outputs.prepare_folder(workdir, '--workdir')
  path = os.path.join(workdir, LOCK_FILE)
  try:  # Never through a link planted under the lock's name.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o644)
  except OSError as error:
    raise outputs.unwritable(path, error, '--workdir') from error
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 1000).decode(errors='replace').strip() or 'a process that is starting'
      raise WorkdirInUseError(
          f'{workdir} is in use by another training run ({holder}; {path} is locked). Wait for that run to end '
          'or stop it, or train into another --workdir.') from None
    try:
      os.ftruncate(fd, 0)
      os.write(fd, f'process {os.getpid()} on {socket.gethostname()}, started '
                   f'{time.strftime("%Y-%m-%d %H:%M:%S")}'.encode())
    except OSError as error:  # A full disk at the start: one message before any work.
      raise outputs.unwritable(workdir, error, '--workdir') from error
    yield
  finally:
    os.close(fd)  # Releases the lock.
