r"""Images per second of the training input pipeline, per worker count.

  python scripts/bench_input.py --train_data=kvasir_seg:train \
      --manual_dirs=kvasir_seg=/path/to/Kvasir-SEG --workers=0,1,2

Reads, decodes, augments (default: the original policy) and resizes to
288x384 exactly as training does, and prints one row per worker count:
the time to the first batch (worker start-up included) and the steady rate
over the following batches. A benchmark, not a test.
"""
import time

from absl import app
from absl import flags

from resunetpp_jax.config import defaults
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.plan import DataPlan

_TRAIN_DATA = flags.DEFINE_string(
    'train_data', 'kvasir_seg:train', "NAME:SPLIT items joined by '+'.")
_MANUAL_DIRS = flags.DEFINE_string(
    'manual_dirs', '', 'NAME=FOLDER,...: the downloaded datasets.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'TFDS data dir.')
_AUGMENT = flags.DEFINE_string('augment', 'original', 'Augmentation policy.')
_IMAGE_SIZE = flags.DEFINE_list('image_size', ['288', '384'], 'Height, width.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Batch size.')
_WORKERS = flags.DEFINE_list('workers', ['0', '1', '2'], 'Worker counts.')
_BATCHES = flags.DEFINE_integer('batches', 40, 'Timed batches per row.')


def measure(config, num_batches: int) -> tuple[float, float]:
  """(seconds to the first batch, images/s over the next num_batches)."""
  start = time.perf_counter()
  iterator = pipeline.make_train_iterator(DataPlan.from_config(config))
  next(iterator)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  rate = num_batches * config.batch_size / (time.perf_counter() - start)
  iterator.close()
  return first, rate


def main(argv):
  del argv
  config = defaults.get_default_config()
  config.update(dict(
      train_data=_TRAIN_DATA.value, manual_dirs=_MANUAL_DIRS.value,
      data_dir=_DATA_DIR.value, augment=_AUGMENT.value,
      image_size=tuple(int(s) for s in _IMAGE_SIZE.value),
      batch_size=_BATCH_SIZE.value))
  pipeline.prepare_if_needed(DataPlan.from_config(config))
  print(f'{config.train_data}, augment={config.augment}, image_size='
        f'{config.image_size}, batch_size={config.batch_size},'
        f' {_BATCHES.value} timed batches per row')
  print(f'{"workers":>8} {"first batch s":>14} {"images/s":>10}')
  for workers in _WORKERS.value:
    config.num_workers = int(workers)
    first, rate = measure(config, _BATCHES.value)
    print(f'{config.num_workers:>8} {first:>14.1f} {rate:>10.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
