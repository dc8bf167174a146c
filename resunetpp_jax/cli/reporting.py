"""How every command-line tool reports a problem the user can fix: its message alone, no traceback.

An `errors.UserError` says what is wrong, naming the file or setting, and what to do.
The commands (`main`, `predict`, `evaluate`, `export`, `data.prepare`, ...) start through `run`,
which prints such an error as one paragraph on stderr and exits with status 1;
`--verbosity=1` (or `-v 1`) adds the traceback for a bug report. Anything else
is a bug and keeps its traceback.
"""
import errno
import logging as python_logging
import sys
import threading
import traceback
from typing import Callable

from absl import app
from absl import flags
from absl import logging

from resunetpp_jax import errors

_CHATTY_LIBRARIES = ('/orbax/', '/tensorflow_datasets/', '/grain/', '/jax/_src/xla_bridge')


def hide_library_info_logs():
  """Keeps the console to our own progress and messages.

  Libraries' INFO lines are dropped (orbax logs ~30 per save or restore), and
  so, unless --verbosity asks for them, are their tracebacks: orbax logs a failed
  background save from each of its threads (hundreds of lines for one full
  disk), then raises the same error in the caller, which reports it once.
  """
  def keep(record: python_logging.LogRecord) -> bool:
    if not any(p in record.pathname for p in _CHATTY_LIBRARIES):
      return True
    if record.exc_info:
      return flags.FLAGS.verbosity >= 1
    return record.levelno >= python_logging.WARNING
  logging.get_absl_handler().addFilter(keep)


def report(error: BaseException) -> None:
  """Prints `error` for the user: the traceback only when --verbosity asks for it."""
  if flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1:
    traceback.print_exception(error)
  print(f'Error: {error}', file=sys.stderr)


def _background_disk_full_in_one_line(args: threading.ExceptHookArgs) -> None:
  """A library's writer thread (TensorBoard events, orbax) that meets a full disk gets one line, not a traceback:
  the main thread's own write meets the same disk and says what to do."""
  if isinstance(args.exc_value, OSError) and args.exc_value.errno == errno.ENOSPC:
    logging.warning('The background writer %s stopped: the disk is full (%s).', args.thread.name,
                    args.exc_value.filename or 'its file')
    return
  threading.__excepthook__(args)


def run(main: Callable[[list[str]], int | None], **kwargs) -> None:
  """`absl.app.run(main)`, quiet libraries, and a UserError printed by `report` with exit status 1."""
  def guarded_main(argv: list[str]) -> int | None:
    hide_library_info_logs()
    threading.excepthook = _background_disk_full_in_one_line
    try:
      return main(argv)
    except errors.UserError as error:
      report(error)
      return 1
  app.run(guarded_main, **kwargs)
