r"""CPU images per second of the exported ONNX model (onnxruntime) against our JAX predict, same network.

  python scripts/bench_export.py [--batches=1,8] [--calls=3] [--image_size=288,384]

Builds the full-width network (filters 32..512; the packaged weights when this installation has them, else the
Keras-style random initialisation: speed does not depend on the values), exports it to a temporary ONNX file,
and times `predictor_lib.Predictor.predict_proba` with the JAX model and with `Predictor.from_onnx` on the same
uint8 images at the model's size: the same scaling, sigmoid and batching around the network, which is where the
two differ. One row per backend and batch size: the first call (JAX: its compile) and the steady rate over
--calls further calls. A benchmark, not a test.
"""
import os
import tempfile
import time

from absl import app
from absl import flags
from flax import nnx
import numpy as np

from resunetpp_jax import models
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.config import defaults
from resunetpp_jax.inference import export_writer
from resunetpp_jax.inference import predictor as predictor_lib

_BATCHES = flags.DEFINE_list('batches', ['1', '8'], 'Predictor batch sizes.')
_CALLS = flags.DEFINE_integer('calls', 3, 'Timed predict calls per row, after the first.')
_IMAGE_SIZE = flags.DEFINE_list('image_size', ['288', '384'], 'Height, width.')


def _model():
  """(model, config, description): the packaged model if any, else the default config's network."""
  if model_file.SHIPPED_WEIGHTS.is_file():
    model, config, _ = model_file.load()
    return model, config, 'packaged weights'
  config = defaults.get_default_config()
  return models.create_model(config, nnx.Rngs(config.seed)), config, 'random initialisation'


def measure(predictor: predictor_lib.Predictor, images: np.ndarray, calls: int) -> tuple[float, float]:
  """(seconds of the first call, images/s over the next `calls` calls)."""
  start = time.perf_counter()
  predictor.predict_proba(images)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(calls):
    predictor.predict_proba(images)
  return first, calls * len(images) / (time.perf_counter() - start)


def main(argv):
  del argv
  model, config, weights = _model()
  model = export_writer.float32_model(model, config)  # What the ONNX graph computes in.
  config.image_size = tuple(int(s) for s in _IMAGE_SIZE.value)
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, 'model.onnx')
    start = time.perf_counter()
    export_writer.save(model, config, path, export_writer.metadata(config, weights, None))
    print(f'filters {config.filters} ({weights}), image_size {config.image_size}, {os.cpu_count()} CPUs;'
          f' ONNX export {time.perf_counter() - start:.0f} s, {_CALLS.value} timed calls per row', flush=True)
    print(f'{"backend":>12} {"batch":>6} {"first call s":>13} {"images/s":>9}', flush=True)
    rng = np.random.default_rng(0)
    for batch_size in (int(b) for b in _BATCHES.value):
      images = rng.integers(0, 256, (batch_size, *config.image_size, 3), np.uint8)
      for backend, predictor in (('jax', predictor_lib.Predictor(model, config, batch_size=batch_size)),
                                 ('onnxruntime', predictor_lib.Predictor.from_onnx(path, batch_size=batch_size))):
        first, rate = measure(predictor, images, _CALLS.value)
        print(f'{backend:>12} {batch_size:>6} {first:>13.1f} {rate:>9.2f}', flush=True)


if __name__ == '__main__':
  app.run(main)
