"""The data a run reads, parsed once from its config into one typed, frozen value that the pipeline takes.

The config keeps plain strings (`'kvasir_seg:pranet_train+cvc_clinicdb:pranet_train'`), so that one command-line
flag overrides each; `DataPlan.from_config` parses them (`specs`) and copies the settings the input pipeline needs,
and `config.validation.validate` hands the plan down, so nothing below parses the config's data keys again.
"""
import dataclasses

import ml_collections

from resunetpp_jax.data import specs


@dataclasses.dataclass(frozen=True)
class DataPlan:
  """Which splits train, validate and test, where their downloads are, and how batches are drawn."""
  train: tuple[specs.DataSpec, ...]  # config.train_data: one stream, in order.
  validation: tuple[specs.DataSpec, ...]  # config.validation_data (empty with a carve-out).
  test: tuple[specs.DataSpec, ...]  # config.test_data: each scored apart.
  manual_dirs: tuple[tuple[str, str], ...]  # config.manual_dirs: (dataset, its download folder).
  data_dir: str
  validation_fraction: float
  seed: int
  image_size: tuple[int, int]
  batch_size: int
  epoch_multiplier: int
  augment: str
  num_workers: int
  prefetch_buffer_size: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'DataPlan':
    """Parses the data keys; raises errors.ConfigError naming the key of a malformed one."""
    return cls(
        train=tuple(specs.parse_data(config.train_data, 'config.train_data')),
        validation=tuple(specs.parse_data(config.validation_data, 'config.validation_data')),
        test=tuple(specs.parse_data(config.test_data, 'config.test_data', specs.LIST)),
        manual_dirs=tuple(specs.parse_manual_dirs(config.manual_dirs, 'config.manual_dirs').items()),
        data_dir=config.data_dir,
        validation_fraction=float(config.validation_fraction),
        seed=int(config.seed),
        image_size=tuple(config.image_size),
        batch_size=int(config.batch_size),
        epoch_multiplier=int(config.epoch_multiplier),
        augment=config.augment,
        num_workers=int(config.num_workers),
        prefetch_buffer_size=int(config.prefetch_buffer_size),
    )

  def manual_dir(self, name: str) -> str:
    """The download folder of dataset `name`, or '' where the config names none."""
    return dict(self.manual_dirs).get(name, '')

  def with_manual_dirs(self, extra: dict[str, str]) -> 'DataPlan':
    """This plan with `extra`'s folders added, preferred over the config's (evaluate's --manual_dirs)."""
    return dataclasses.replace(self, manual_dirs=tuple({**dict(self.manual_dirs), **extra}.items()))

  def named(self, items: tuple[specs.DataSpec, ...]) -> str:
    """'kvasir_seg:pranet_train+cvc_clinicdb:pranet_train': splits as the config writes them, for messages."""
    return specs.UNION.join(map(str, items))
