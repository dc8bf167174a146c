r"""Frames per second of `predict` on a video, the real-time factor, and where the time goes.

  nice -n 10 python -m scripts.bench_video --height=1080 --width=1920 --frames=32
  python -m scripts.bench_video --height=1080 --width=1920 --frames=128 --no_network

(from the repository root). Writes a synthetic video (a picture of the polyp renderer, panned, MPEG-4 at
--fps), builds a Predictor of the full-width network (config defaults: filters 32..512, 288x384 model
input) with random initial weights, or the model of --workdir, and times each stage of
`video.segment_video` on its own, one after the other in one thread, in milliseconds per frame: decode
(read + BGR->RGB), resize to the model input, the model (batches of --batch_size at model size,
synchronised), the probabilities resized back, the CSV statistics (threshold, connected components), the
overlay and the encode. Then it times the real `video.segment_video` on the whole video, which overlaps
decoding, the model, rendering and encoding in threads: frames/s and the real-time factor (frames/s /
fps). The first model call (the compile, or a hit of the persistent compilation cache) is timed apart.

--no_network replaces the network by one that returns a fixed ellipse (a fifth of the picture) at once:
what is left is the pipeline around the model, the speed it allows on an accelerator that takes no
time. A benchmark, not a test.
"""
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import cv2
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from resunetpp_jax import models
from resunetpp_jax import visualize
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import defaults
from resunetpp_jax.data.synthetic_polyps import render
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.inference import video
from resunetpp_jax.runtime import compilation_cache

_HEIGHT = flags.DEFINE_integer('height', 1080, 'Video height.')
_WIDTH = flags.DEFINE_integer('width', 1920, 'Video width.')
_FRAMES = flags.DEFINE_integer('frames', 32, 'Frames in the video.')
_FPS = flags.DEFINE_float('fps', 30.0, 'Frame rate of the video (the real-time factor is relative to it).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Frames per model call (predict --batch_size).')
_WORKDIR = flags.DEFINE_string('workdir', '', 'Use this training workdir\'s best model instead of random weights.')
_NO_NETWORK = flags.DEFINE_bool('no_network', False, 'A fixed ellipse for the network: time the pipeline alone.')

_PAN_STEP = 8  # pixels per frame


def _write_video(path: str, height: int, width: int, frames: int, fps: float):
  image, _ = render.render(np.random.default_rng(0), height, width + _PAN_STEP * (frames - 1))
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*video.OVERLAY_FOURCC), fps, (width, height))
  for k in range(frames):
    writer.write(cv2.cvtColor(image[:, _PAN_STEP * k:_PAN_STEP * k + width], cv2.COLOR_RGB2BGR))
  writer.release()


class _Ellipse(nnx.Module):
  """Stands in for the network: +-10 logits of an ellipse a fifth of the picture, whatever the input."""

  def __init__(self, size: tuple[int, int]):
    mask = np.zeros(size, np.uint8)
    cv2.ellipse(mask, (size[1] // 2, size[0] // 2), (size[1] // 4, size[0] // 4), 0, 0, 360, 1, -1)
    self.logits = nnx.Variable(jnp.asarray(np.where(mask, 10.0, -10.0), jnp.float32)[None, ..., None])

  def __call__(self, x):
    return [jnp.broadcast_to(self.logits[...], (*x.shape[:3], 1))]


def _predictor() -> predictor_lib.Predictor:
  if _NO_NETWORK.value:
    config = defaults.get_default_config()
    return predictor_lib.Predictor(_Ellipse(tuple(config.image_size)), config, batch_size=_BATCH_SIZE.value)
  if _WORKDIR.value:
    config = workdir_config.load_config(_WORKDIR.value)
    compilation_cache.enable(config.compilation_cache_dir)
    return predictor_lib.Predictor.from_workdir(_WORKDIR.value, batch_size=_BATCH_SIZE.value)
  config = defaults.get_default_config()
  compilation_cache.enable(config.compilation_cache_dir)
  model = models.create_model(config, nnx.Rngs(config.seed))
  return predictor_lib.Predictor(model, config, batch_size=_BATCH_SIZE.value)


def _network_name() -> str:
  if _NO_NETWORK.value:
    return 'no network (--no_network)'
  return '--workdir ' + _WORKDIR.value if _WORKDIR.value else 'random weights'


def _ms_per_frame(function, items) -> tuple[list, float]:
  start = time.perf_counter()
  results = [function(item) for item in items]
  return results, 1000 * (time.perf_counter() - start) / len(items)


def main(argv):
  del argv
  height, width, count, fps = _HEIGHT.value, _WIDTH.value, _FRAMES.value, _FPS.value
  predictor = _predictor()
  size = tuple(predictor.config.image_size)
  print(f'{time.strftime("%Y-%m-%d")}, python -m scripts.bench_video {" ".join(sys.argv[1:])}')
  print(f'{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs; video {width}x{height} {fps:g} fps, {count}'
        f' frames; model filters {tuple(predictor.config.filters)}, input {size[0]}x{size[1]},'
        f' {_network_name()}, batch {predictor.batch_size}')
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, 'bench.mp4')
    _write_video(path, height, width, count, fps)

    start = time.perf_counter()
    predictor.predict_proba(np.zeros((predictor.batch_size, *size, 3), np.uint8))
    print(f'first model call (compile or cache hit, and one batch): {time.perf_counter() - start:.1f} s')

    capture, info = video.open_video(path)
    start = time.perf_counter()
    frames = [frame.image for frame in video.read_frames(capture, info, path)]
    decode = 1000 * (time.perf_counter() - start) / len(frames)
    capture.release()
    resized, resize = _ms_per_frame(lambda image: predictor_lib.resize_image(image, size), frames)
    start = time.perf_counter()
    small = []
    for first in range(0, len(resized), predictor.batch_size):
      small += predictor.predict_proba(resized[first:first + predictor.batch_size])
    model = 1000 * (time.perf_counter() - start) / len(resized)
    probabilities, resize_back = _ms_per_frame(
        lambda p: predictor_lib.resize_map(p, (height, width)), small)
    rows, statistics = _ms_per_frame(lambda p: video.frame_row(0, fps, p), probabilities)
    foreground = np.mean([float(row[video.CSV_COLUMNS.index('foreground_fraction')]) for row in rows])
    overlays, overlay = _ms_per_frame(
        lambda pair: cv2.cvtColor(visualize.overlay(pair[0], pair[1] >= predictor_lib.THRESHOLD),
                                  cv2.COLOR_RGB2BGR), list(zip(frames, probabilities)))
    writer = cv2.VideoWriter(os.path.join(folder, 'encode.mp4'), cv2.VideoWriter_fourcc(*video.OVERLAY_FOURCC),
                             fps, (width, height))
    _, encode = _ms_per_frame(writer.write, overlays)
    writer.release()
    del frames, resized, probabilities, overlays

    stages = {'decode': decode, 'resize to model': resize, 'model': model, 'resize back': resize_back,
              'CSV statistics': statistics, 'overlay': overlay, 'encode': encode}
    total = sum(stages.values())
    print(f'{"stage":<16} {"ms/frame":>9} {"share":>6}')
    for name, ms in stages.items():
      print(f'{name:<16} {ms:>9.1f} {ms / total:>6.1%}')
    print(f'{"sum":<16} {total:>9.1f}  -> {1000 / total:.2f} frames/s')
    # The overlay and the CSV statistics cost more the more of the frame the mask covers.
    print(f'mean foreground fraction of the predicted masks: {foreground:.3f}')

    result = video.segment_video(predictor, path, os.path.join(folder, 'out'))
    rate = result.frames / result.seconds
    print(f'video.segment_video: {result.frames} frames in {result.seconds:.1f} s = {rate:.2f} frames/s,'
          f' real-time factor {rate / fps:.3f} (1 = as fast as the video plays at {fps:g} fps)')


if __name__ == '__main__':
  app.run(main)
