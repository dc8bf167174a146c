"""Finds a config by name: `--config=polyp` is the `polyp.py` shipped in the package, so no clone is needed.

The top-level `configs/` folder is installed as the package `resunetpp_jax.configs`. A value that names an
existing file is used as it is (`--config=configs/polyp.py`, or your own); ml_collections' `:ARGS` suffix is
kept either way.
"""
import importlib.resources
import os
import re
import sys

from absl import app

from resunetpp_jax import errors
from resunetpp_jax.cli import reporting

PACKAGE = 'resunetpp_jax.configs'
_CONFIG_FLAG = re.compile(r'^--config=(?P<value>.*)$')


def available() -> dict[str, str]:
  """Name -> path of every config shipped in the package."""
  folder = importlib.resources.files(PACKAGE)
  return {entry.name[:-3]: str(entry) for entry in folder.iterdir()
          if entry.name.endswith('.py') and not entry.name.startswith('_')}


def path_of(value: str) -> str:
  """The file that `--config=value` means; raises ConfigError for neither a file nor a shipped name."""
  name, colon, arguments = value.partition(':')
  if os.path.exists(name):
    return value
  shipped = available()
  key = name[:-3] if name.endswith('.py') else name
  if key in shipped and os.sep not in name and '/' not in name:
    return shipped[key] + colon + arguments
  raise errors.ConfigError(
      f'--config={value}: there is no file {name!r}, and no config of that name is shipped '
      f'({", ".join(sorted(shipped))}). Give a config file or one of those names.')


def resolve(argv: list[str]) -> list[str]:
  """`argv` with a `--config=NAME` (or `--config NAME`) replaced by the shipped config's path."""
  resolved = list(argv)
  for index, arg in enumerate(resolved):
    match = _CONFIG_FLAG.match(arg)
    if match:
      resolved[index] = '--config=' + path_of(match.group('value'))
    elif arg == '--config' and index + 1 < len(resolved):
      resolved[index + 1] = path_of(resolved[index + 1])
  return resolved


def flags_parser(argv: list[str]) -> list[str]:
  """absl's parser after `resolve`; an unknown config name is one message and exit status 1."""
  try:
    argv = resolve(argv)
  except errors.ConfigError as error:
    reporting.report(error)
    sys.exit(1)
  return app.parse_flags_with_usage(argv)
