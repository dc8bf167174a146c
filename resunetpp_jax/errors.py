"""The package's base exceptions: faults that the message alone explains to the user.

A `UserError` says what is wrong, naming the file or setting, and what to do; every
command prints it as one paragraph without a traceback (`cli.reporting.run`).
Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A fault in the input, a setting or the environment that the message fully explains."""


class ConfigError(UserError, ValueError):
  """A configuration or command-line value that cannot work."""


def is_out_of_memory(error: Exception) -> bool:
  """XLA's words for a device out of memory: 'RESOURCE_EXHAUSTED: Out of memory while trying to allocate N bytes' on
  GPUs, 'Out of memory allocating N bytes' on the CPU."""
  return 'RESOURCE_EXHAUSTED' in str(error) or 'Out of memory' in str(error)


def out_of_memory_opening(error: Exception, platform: str) -> str:
  """'The GPU ran out of memory (<XLA's first line>)': the start of each tool's message; XLA's report runs on."""
  return f'The {platform.upper()} ran out of memory ({str(error).splitlines()[0]})'
