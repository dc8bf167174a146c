"""The text forms that name data in configs and on command lines.

  'kvasir_seg:pranet_train+cvc_clinicdb:pranet_train'  one stream of examples
      ('+'-joined NAME:SPLIT items: config.train_data, config.validation_data);
  'kvasir_seg:pranet_test,cvc_colondb:all'  several sets, each scored apart
      (','-separated: config.test_data, evaluate's --datasets);
  'kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/data/CVC-ClinicDB'  where each
      dataset's download is (config.manual_dirs, evaluate's --manual_dirs).

NAME is a dataset of resunetpp_jax.data.builders, SPLIT one of its splits or
'all'. Plain strings, so that one command-line flag overrides each.
"""
from typing import NamedTuple
from typing import Sequence

from resunetpp_jax import errors

UNION, LIST = '+', ','


class DataSpec(NamedTuple):
  """One split of one dataset."""
  name: str
  split: str

  def __str__(self) -> str:
    return f'{self.name}:{self.split}'


def _items(value: str | Sequence[str], separator: str) -> list[str]:
  if isinstance(value, str):
    value = value.split(separator)
  return [item.strip() for item in value if item.strip()]


def parse_data(value: str | Sequence[str], key: str,
               separator: str = UNION) -> list[DataSpec]:
  """'a:x+b:y' (or 'a:x,b:y' with separator=LIST, or a list) -> DataSpecs.

  Args:
    value: the text, or its items (an absl list flag).
    key: the setting's name, for messages ('config.train_data').
    separator: UNION or LIST.

  Raises:
    errors.ConfigError: an item is not NAME:SPLIT, or is given twice.
  """
  specs = []
  for item in _items(value, separator):
    name, colon, split = (part.strip() for part in item.partition(':'))
    if not colon or not name or not split:
      raise errors.ConfigError(
          f'{key} item {item!r}: expected NAME:SPLIT, e.g.'
          ' kvasir_seg:pranet_train.')
    spec = DataSpec(name, split)
    if spec in specs:
      raise errors.ConfigError(
          f'{key} names {spec} twice; use config.epoch_multiplier to repeat'
          ' data.')
    specs.append(spec)
  return specs


def parse_manual_dirs(value: str | Sequence[str], key: str) -> dict[str, str]:
  """'a=/x,b=/y' (or its items) -> {'a': '/x', 'b': '/y'}; a path may hold =."""
  folders = {}
  for item in _items(value, LIST):
    name, equals, folder = item.partition('=')
    name, folder = name.strip(), folder.strip()
    if not equals or not name or not folder:
      raise errors.ConfigError(
          f'{key} item {item!r}: expected NAME=FOLDER, e.g.'
          ' kvasir_seg=/data/Kvasir-SEG.')
    if name in folders:
      raise errors.ConfigError(
          f'{key} gives two folders for {name}.')
    folders[name] = folder
  return folders


def join_manual_dirs(folders: dict[str, str]) -> str:
  """The inverse of parse_manual_dirs."""
  return LIST.join(f'{name}={folder}' for name, folder in folders.items())
