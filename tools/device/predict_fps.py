r"""Frames per second of `Predictor.predict_proba` on full-HD frames: the shipped model, batch 1 and batched, per dtype.

  python -m tools.device.predict_fps --height=1080 --width=1920 --batches=1,8 --dtypes=float32,bfloat16 --frames=64

(issue 28, part 2; tools/device/issue28_call.sh runs it on the GPU). The shipped model's weights (float32
parameters) are put into the same network built with each compute dtype; the frames are random uint8 pictures of
--height x --width, so the time is the package's whole predict path per frame: upload, resize to the model's input,
the network, the probabilities resized back to the frame and fetched to the host. Batch B calls predict_proba on B
frames at a time (batch 1: one frame per call, as a live video loop would). The first call of each shape (the
compile, or a hit of the persistent compilation cache) is timed apart. One JSON line per measurement on stdout.
Dry run on a CPU: --height=64 --width=96 --frames=2 --batches=1,2.
"""
import json
import time

from absl import app
from absl import flags
from flax import nnx
import jax
import numpy as np

from resunetpp_jax import models
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.inference import predictor as predictor_lib

_HEIGHT = flags.DEFINE_integer('height', 1080, 'Frame height.')
_WIDTH = flags.DEFINE_integer('width', 1920, 'Frame width.')
_FRAMES = flags.DEFINE_integer('frames', 64, 'Timed frames per measurement (a multiple of each batch).')
_BATCHES = flags.DEFINE_list('batches', ['1', '8'], 'Frames per predict_proba call.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes (config.dtype).')
_MODEL = flags.DEFINE_string('model', '', "A model file; '' is the shipped one.")


def predictor_for(dtype: str, batch: int) -> predictor_lib.Predictor:
  shipped, config, _ = model_file.load(_MODEL.value or None)
  config = config.copy_and_resolve_references()
  config.dtype = dtype
  model = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(0)))
  nnx.update(model, nnx.state(shipped))
  return predictor_lib.Predictor(model, config, batch_size=batch)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (_FRAMES.value, _HEIGHT.value, _WIDTH.value, 3), dtype=np.uint8)
  # The model file's own predictor on one frame, in the dtype its config names (bfloat16 for the shipped model):
  # each variant's largest probability difference from it (0 in that dtype, the other dtype's rounding otherwise)
  # shows that the timed network is the model file's.
  own = predictor_lib.Predictor.pretrained(_MODEL.value or None, batch_size=1)
  reference = np.asarray(own.predict_proba(frames[:1]))
  for dtype in _DTYPES.value:
    for batch in map(int, _BATCHES.value):
      predictor = predictor_for(dtype, batch)
      start = time.perf_counter()
      first = np.asarray(predictor.predict_proba(frames[:batch]))  # compiles (or loads) this batch's shape
      first_s = time.perf_counter() - start
      max_diff = float(np.max(np.abs(first[:1] - reference)))
      calls = [frames[k:k + batch] for k in range(0, len(frames) - batch + 1, batch)]
      start = time.perf_counter()
      for call in calls:
        np.asarray(predictor.predict_proba(call))
      seconds = time.perf_counter() - start
      timed = batch * len(calls)
      print(json.dumps({'device': jax.devices()[0].device_kind, 'model': config_name(predictor.config),
                        'dtype': dtype, 'batch': batch, 'frame': f'{_HEIGHT.value}x{_WIDTH.value}',
                        'frames': timed, 'fps': round(timed / seconds, 2),
                        'ms_per_frame': round(1000 * seconds / timed, 2), 'first_call_s': round(first_s, 2),
                        'max_abs_diff_vs_model_file': max_diff, 'model_file_dtype': own.config.dtype}),
            flush=True)


def config_name(config) -> str:
  return f'{config.model} filters {tuple(config.filters)} input {tuple(config.image_size)}'


if __name__ == '__main__':
  app.run(main)
