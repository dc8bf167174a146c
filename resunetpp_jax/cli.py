"""How every command-line tool reports a problem the user can fix: its message alone, no traceback.

A `UserError` says what is wrong, naming the file or setting, and what to do. The
CLIs (`main`, `predict`, `evaluate`, `export`, `data.prepare`) start through `run`,
which prints such an error as one paragraph on stderr and exits with status 1;
`--verbosity=1` (or `-v 1`) adds the traceback for a bug report. Anything else
is a bug and keeps its traceback.
"""
import sys
import traceback
from typing import Callable

from absl import app
from absl import flags


class UserError(Exception):
  """A fault in the input, a setting or the environment that the message fully explains."""


def report(error: BaseException) -> None:
  """Prints `error` for the user: the traceback only when --verbosity asks for it."""
  if flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1:
    traceback.print_exception(error)
  print(f'Error: {error}', file=sys.stderr)


def run(main: Callable[[list[str]], int | None], **kwargs) -> None:
  """`absl.app.run(main)`, with a UserError printed by `report` and exit status 1."""
  def guarded_main(argv: list[str]) -> int | None:
    try:
      return main(argv)
    except UserError as error:
      report(error)
      return 1
  app.run(guarded_main, **kwargs)
