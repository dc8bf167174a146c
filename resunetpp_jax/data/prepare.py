r"""Prepares one dataset and prints its splits and the prepare summary.

  python -m resunetpp_jax.data.prepare --dataset=kvasir_seg \
      --manual_dir=/path/to/Kvasir-SEG [--data_dir=/path/to/tensorflow_datasets]

A dataset already prepared in data_dir is reused (its stored summary is
printed); delete its folder to prepare it again from another download. A
problem in the files stops preparation with one message naming every file
that cannot be used and what to do; nothing is left behind.
"""
from absl import app
from absl import flags

from resunetpp_jax.cli import reporting
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import registry

_DATASET = flags.DEFINE_enum('dataset', None, sorted(registry.DATASETS),
                             'Dataset to prepare.', required=True)
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', '', 'Folder holding the downloaded dataset.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', '', "TFDS data dir; '' means $TFDS_DATA_DIR or"
    ' ~/tensorflow_datasets.')


def summary_lines(builder) -> list[str]:
  """Examples per split, then the prepare summary where the builder has one."""
  lines = [f'{builder.name} prepared in {builder.data_dir}']
  for split, info in sorted(builder.info.splits.items()):
    lines.append(f'  {split}: {info.num_examples} examples')
  every = builder.info.splits['train+valid+test'].num_examples
  lines.append(f'  all (read as train+valid+test): {every} examples')
  metadata = builder.info.metadata or {}
  if 'prepare_summary' in metadata:
    summary = image_mask_pairs.PrepareSummary(**metadata['prepare_summary'])
    lines.append('Prepare summary:')
    lines += [f'  {line}' for line in summary.lines()]
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  builder = registry.prepare(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value)
  print('\n'.join(summary_lines(builder)))


def run():
  reporting.run(main)


if __name__ == '__main__':
  run()
