r"""Segments a video frame by frame: an overlay video and one CSV row per frame.

  python -m resunetpp_jax.predict --workdir=WORKDIR --input=procedure.mp4 \
      --output=DIR [--temporal_smoothing=0.5] [--tta] [--batch_size=8]

An --input whose extension is a video container's (VIDEO_EXTENSIONS) is read
through OpenCV's FFmpeg backend, so any codec OpenCV decodes works. It writes

  DIR/<stem>_overlay.mp4  every frame with the predicted mask tinted and
                          outlined (MPEG-4 Part 2), same frame count, size and
                          frame rate as the input;
  DIR/<stem>.csv          one row per frame, columns CSV_COLUMNS (see
                          `frame_row`).

Existing files of these names are not replaced without overwrite=True
(predict's --overwrite), and a link or a folder under either name is refused,
all before any frame is decoded.

Streaming: frames are decoded, batched (predictor.batch_size), segmented and
written as they come, so memory does not grow with the video's length; the
decoder (one batch ahead), the model, the rendering (frames of a batch in
parallel) and the encoder work at the same time, in threads. Both
files are written under unique temporary names in DIR (`runtime.outputs`,
'.<name>.XXXX.partial.<ext>', created without following links) and renamed
when the video is done: an interrupted run leaves what it finished there and
keeps earlier results, and two runs on one video never write into each other's
files.

Broken frames: a frame's index comes from its timestamp, so a frame the decoder
refuses or drops leaves a gap in the indices. Each missing frame is written as
a black frame and gets a CSV row with broken=1 and empty prediction cells, so
the output keeps the input's frame count and timing; the run goes on, its
summary lists the broken frames and the exit status is 1, as for unreadable
images. Undecodable frames at the very end cannot be counted, but when fewer
frames were read than the container declares, or none at all, the summary says
so and the exit status is 1 too.
"""
import concurrent.futures
import csv
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Iterator
from typing import NamedTuple
from typing import Sequence

from absl import logging
import cv2
import numpy as np
import tqdm

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs
from resunetpp_jax.runtime import progress as progress_lib

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.ts', '.wmv')
CSV_COLUMNS = ('frame', 'time_s', 'broken', 'polyp', 'foreground_fraction',
               'max_probability', 'boxes')
# MPEG-4 Part 2: the encoder every OpenCV build with FFmpeg has (its wheels
# carry no H.264 encoder); desktop players (VLC, mpv, ...) play it, browsers
# do not. Its sizes must be even: OpenCV rounds odd ones down.
OVERLAY_FOURCC = 'mp4v'
# The longest run of undecodable frames skipped. Longer, a run of failed reads
# is the end of the stream (a failed read there costs microseconds), and a jump
# of the timestamps a discontinuity rather than lost frames.
MAX_SKIPPED_FRAMES = 300
_LOG_EVERY_SECONDS = 10.0
_BROKEN_FRAMES_LISTED = 20


def is_video(path) -> bool:
  """Whether `path` names a video: decided by its extension (VIDEO_EXTENSIONS)."""
  return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What the container declares: frame rate, size and (0 if unknown) frames."""
  fps: float
  width: int
  height: int
  frame_count: int


class Frame(NamedTuple):
  """One frame: its index and RGB uint8 (H, W, 3) pixels, None if broken."""
  index: int
  image: np.ndarray | None


def open_video(path) -> tuple[cv2.VideoCapture, VideoInfo]:
  """Opens `path` for reading; a errors.UserError says why it cannot be.

  A frame size above --max_pixels is refused before any frame is read, as
  `image_io` refuses such images.
  """
  capture = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG)
  if not capture.isOpened():
    raise errors.UserError(
        f'{path}: OpenCV cannot open it as a video (missing, an unknown'
        ' container or codec, or cut short: an MP4 whose end is missing has'
        ' lost its index). Check that it plays, or re-encode it, e.g.'
        f' `ffmpeg -i {path} fixed.mp4`.')
  fps = capture.get(cv2.CAP_PROP_FPS)
  info = VideoInfo(fps, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                   int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                   max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0))
  if not (math.isfinite(fps) and fps > 0) or min(info.width,
                                                   info.height) < 1:
    capture.release()
    raise errors.UserError(
        f'{path}: the container gives no usable frame rate or size ({fps}'
        f' frames/s, {info.width}x{info.height}). Remux it with a frame rate,'
        f' e.g. `ffmpeg -i {path} -r 30 fixed.mp4`.')
  try:
    image_io.check_pixels(path, info.width, info.height)
  except image_io.ImageReadError:
    capture.release()
    raise
  return capture, info


def read_frames(capture: cv2.VideoCapture, info: VideoInfo,
                path) -> Iterator[Frame]:
  """Every frame in order; a frame that cannot be decoded as Frame(index, None).

  The index is the frame's timestamp times the frame rate, rounded: a frame
  the decoder refuses (a failed read) or drops silently leaves a gap, which is
  filled with broken frames. Where timestamps are unusable (absent or not
  increasing) or jump by more than MAX_SKIPPED_FRAMES, the failed reads since
  the last good frame are counted instead. Undecodable frames at the end are
  not yielded: nothing tells how many there were.
  """
  next_index = failed_reads = 0
  while failed_reads <= MAX_SKIPPED_FRAMES:
    ok, bgr = capture.read()
    if not ok:
      failed_reads += 1
      continue
    index = round(capture.get(cv2.CAP_PROP_POS_MSEC) * info.fps / 1000)
    if not 0 <= index - next_index <= MAX_SKIPPED_FRAMES:
      index = next_index + failed_reads
    if bgr.shape[:2] != (info.height, info.width):
      raise errors.UserError(
          f'{path}: frame {index} is {bgr.shape[1]}x{bgr.shape[0]}, the video'
          f' {info.width}x{info.height}; a video whose size changes midway is'
          ' not supported: split it where the size changes.')
    for missing in range(next_index, index):
      yield Frame(missing, None)
    yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    next_index, failed_reads = index + 1, 0


class TemporalSmoothing:
  """An exponential moving average of probability maps across frames.

  s_0 = p_0 and s_t = alpha * s_(t-1) + (1 - alpha) * p_t: a frame's weight
  shrinks by alpha per later frame, steadying masks that flicker from frame to
  frame at the cost of lag. Broken frames leave the average unchanged.
  """

  def __init__(self, alpha: float):
    if not 0 <= alpha < 1:
      raise ValueError(f'The smoothing weight must be in [0, 1), got {alpha}.')
    self.alpha = alpha
    self._average = None

  def __call__(self, probabilities: np.ndarray) -> np.ndarray:
    if self._average is None or self.alpha == 0:
      self._average = probabilities
    else:
      self._average = (self.alpha * self._average +
                       (1 - self.alpha) * probabilities)
    return self._average


def connected_boxes(mask: np.ndarray) -> list[list[int]]:
  """[x, y, width, height] of each 8-connected component, largest area first.

  x, y is the top-left pixel (column, row) in the frame's pixels; components of
  equal area keep raster order (by their first pixel). Labels only the mask's
  bounding box, from even coordinates: OpenCV scans 2x2 blocks, so its labels
  come in the same order as over the whole frame, at a fraction of the cost.
  """
  mask = np.ascontiguousarray(mask, bool).view(np.uint8)
  x, y, width, height = cv2.boundingRect(mask)
  if not width:
    return []
  left, top = x - x % 2, y - y % 2
  count, _, stats, _ = cv2.connectedComponentsWithStats(
      mask[top:y + height, left:x + width], connectivity=8)
  components = sorted(range(1, count),
                      key=lambda k: -stats[k, cv2.CC_STAT_AREA])
  return [[int(stats[k, 0]) + left, int(stats[k, 1]) + top, int(stats[k, 2]),
           int(stats[k, 3])] for k in components]


def frame_row(index: int, fps: float, probabilities: np.ndarray | None,
              mask: np.ndarray | None = None) -> list:
  """The CSV row of frame `index`, in CSV_COLUMNS order.

  time_s is index / fps; polyp is 1 when any pixel's probability is >= 0.5;
  foreground_fraction the share of such pixels; max_probability the highest
  probability; boxes the JSON list of `connected_boxes`, e.g.
  '[[412,230,180,150],[40,18,12,9]]' ('[]' without polyp). A broken frame
  (probabilities None) has broken=1 and these cells empty. `mask`: the
  thresholded probabilities, when the caller has them already.
  """
  time_s = f'{index / fps:.3f}'
  if probabilities is None:
    return [index, time_s, 1, '', '', '', '']
  if mask is None:
    mask = probabilities >= predictor_lib.THRESHOLD
  boxes = connected_boxes(mask)
  return [index, time_s, 0, int(bool(boxes)),
          f'{np.count_nonzero(mask) / mask.size:.6f}',
          f'{probabilities.max():.4f}', json.dumps(boxes, separators=(',', ':'))]


class FrameProgress:
  """Frames done, frames/s and ETA: a tqdm bar on a terminal, else a log line
  every 10 s (job logs, pipes), as `progress_lib.Progress` does for training."""

  def __init__(self, total: int):
    self.total = total
    self._bar = None
    if sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total or None, unit='frame',
                            dynamic_ncols=True, file=sys.stderr)
    self._last_done, self._last_time = 0, time.monotonic()

  def update(self, done: int):
    if self._bar is not None:
      self._bar.update(done - self._bar.n)
      return
    now = time.monotonic()
    if now - self._last_time < _LOG_EVERY_SECONDS:
      return
    rate = (done - self._last_done) / (now - self._last_time)
    line = f'frame {done}' + (f'/{self.total}' if self.total else '') + (
        f' {rate:.2f} frames/s')
    if self.total and rate > 0:
      line += ' ETA ' + progress_lib.format_duration(
          max(self.total - done, 0) / rate)
    logging.info('%s', line)
    self._last_done, self._last_time = done, now

  def close(self):
    if self._bar is not None:
      self._bar.close()


@dataclasses.dataclass(frozen=True)
class VideoResult:
  """What `segment_video` wrote and what it met."""
  input_path: str
  overlay_path: str
  csv_path: str
  info: VideoInfo
  frames: int
  broken: Sequence[int]
  seconds: float


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
  batch = []
  for frame in frames:
    batch.append(frame)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def _render(frame: Frame, probabilities: np.ndarray | None, fps: float,
            black: np.ndarray) -> tuple[list, np.ndarray]:
  """A frame's CSV row and its overlay in BGR for the encoder (black for a broken frame)."""
  if probabilities is None:
    return frame_row(frame.index, fps, None), black
  mask = probabilities >= predictor_lib.THRESHOLD
  return (frame_row(frame.index, fps, probabilities, mask),
          cv2.cvtColor(visualize.overlay(frame.image, mask), cv2.COLOR_RGB2BGR))


def _encode(writer: cv2.VideoWriter, pictures: Sequence[np.ndarray]):
  for picture in pictures:
    writer.write(picture)


def _segment_frames(predictor: predictor_lib.Predictor, frames: Iterator[Frame], fps: float,
                    shape: tuple[int, int], tta: bool, smoother: TemporalSmoothing, rows, writer: cv2.VideoWriter,
                    on_batch) -> tuple[int, list[int]]:
  """Segments, renders and encodes `frames` in a pipeline; returns the frames done and the broken ones' indices.

  While the model runs on one batch, the next is decoded (OpenCV releases the
  GIL) and the previous one encoded (one thread each: capture and writer are
  sequential); the frames of a batch are rendered in parallel. Frames stay in
  order; `on_batch(frames done)` follows each batch's CSV rows.
  """
  render = functools.partial(_render, fps=fps, black=np.zeros((*shape, 3), np.uint8))
  batches = _batches(frames, predictor.batch_size)
  broken, done, encoding = [], 0, None
  with concurrent.futures.ThreadPoolExecutor(1, 'video-decoder') as decoder, \
      concurrent.futures.ThreadPoolExecutor(
          min(predictor.batch_size, os.cpu_count() or 1), 'video-render') as renderers, \
      concurrent.futures.ThreadPoolExecutor(1, 'video-encoder') as encoder:
    upcoming = decoder.submit(next, batches, None)
    while (batch := upcoming.result()) is not None:
      upcoming = decoder.submit(next, batches, None)
      probabilities = iter(predictor.predict_proba(
          [frame.image for frame in batch if frame.image is not None], tta))
      smoothed = [None if frame.image is None else smoother(next(probabilities)) for frame in batch]  # In order.
      rendered = list(renderers.map(render, batch, smoothed))
      rows.writerows(row for row, _ in rendered)
      if encoding:
        encoding.result()  # One batch waits for the encoder at most.
      encoding = encoder.submit(_encode, writer, [picture for _, picture in rendered])
      broken += [frame.index for frame in batch if frame.image is None]
      done += len(batch)
      on_batch(done)
    if encoding:
      encoding.result()
  return done, broken


def output_paths(path, output_dir: str) -> tuple[str, str]:
  """Where the overlay video and the CSV of the video at `path` go."""
  stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
  return f'{stem}_overlay.mp4', f'{stem}.csv'


def check_outputs(path, output_dir: str, *, overwrite: bool = False) -> None:
  """Before any frame is decoded: refuses an unwritable --output, a link or folder under an output's name, and
  existing outputs without `overwrite`."""
  outputs.check_folder(output_dir)
  outputs.refuse_existing(output_paths(path, output_dir), overwrite=overwrite)


def segment_video(predictor: predictor_lib.Predictor, path: str, output_dir: str,
                  *, tta: bool = False, smoothing: float = 0.0, overwrite: bool = True) -> VideoResult:
  """Writes the overlay video and the per-frame CSV of the video at `path`.

  Args:
    predictor: the model; its batch_size frames go to the device at once.
    path: the input video.
    output_dir: where <stem>_overlay.mp4 and <stem>.csv go; created if missing.
    tta: average the predictions of the flipped frames (3x slower).
    smoothing: the weight alpha of `TemporalSmoothing` (0: off).
    overwrite: replace existing outputs (else an OutputExistsError, the old files intact).
  """
  smoother = TemporalSmoothing(smoothing)
  capture, info = open_video(path)
  if info.width % 2 or info.height % 2:
    logging.warning('%s is %dx%d: the encoder needs even sizes, so the overlay'
                    ' video is one pixel narrower or lower.', path, info.width,
                    info.height)
  check_outputs(path, output_dir, overwrite=overwrite)
  outputs.prepare_folder(output_dir)
  overlay_path, csv_path = output_paths(path, output_dir)
  try:
    overlay_handle, partial_overlay = outputs.temporary_path(overlay_path)
    os.close(overlay_handle)
    csv_handle, partial_csv = outputs.temporary_path(csv_path)
  except OSError as error:
    capture.release()
    raise outputs.unwritable(output_dir, error) from error
  writer = cv2.VideoWriter(partial_overlay,
                           cv2.VideoWriter_fourcc(*OVERLAY_FOURCC), info.fps,
                           (info.width, info.height))
  progress = FrameProgress(info.frame_count)
  start = time.monotonic()
  frames_started = False
  try:
    if not writer.isOpened():
      raise errors.UserError(f'Cannot write {overlay_path}: check that'
                             f' {output_dir} is writable and has space.')
    with os.fdopen(csv_handle, 'w', newline='', encoding='utf-8') as f:
      rows = csv.writer(f)
      rows.writerow(CSV_COLUMNS)

      def flush_and_report(done: int):
        nonlocal frames_started
        frames_started = True
        f.flush()
        progress.update(done)

      frames, broken = _segment_frames(predictor, read_frames(capture, info, path), info.fps,
                                       (info.height, info.width), tta, smoother, rows, writer, flush_and_report)
    writer.release()
    outputs.publish(partial_overlay, overlay_path, overwrite=overwrite)
    outputs.publish(partial_csv, csv_path, overwrite=overwrite)
  except OSError as error:
    raise outputs.unwritable(output_dir, error) from error
  finally:
    progress.close()
    capture.release()
    writer.release()
    if not frames_started:  # Nothing worth keeping; after frames, the partial files keep the work done.
      for partial in (partial_overlay, partial_csv):
        if os.path.lexists(partial):
          os.remove(partial)
  return VideoResult(os.fspath(path), overlay_path, csv_path, info, frames,
                     broken, time.monotonic() - start)


def report(result: VideoResult, step: int | None) -> int:
  """Prints the run's summary; exit status 1 when frames were broken, or fewer (or no) frames decoded than the
  container declares."""
  print(f'{result.frames} frames of {result.input_path} segmented into'
        f' {result.overlay_path} and {result.csv_path} (checkpoint step {step};'
        f' {result.frames / max(result.seconds, 1e-9):.2f} frames/s).')
  status = 0
  if not result.frames:
    print(f'No frame of {result.input_path} could be decoded: check that it'
          f' plays, or re-encode it, e.g. `ffmpeg -i {result.input_path}'
          ' fixed.mp4`.', file=sys.stderr)
    status = 1
  elif result.info.frame_count and result.frames < result.info.frame_count:
    print(f'The container declares {result.info.frame_count} frames;'
          f' decoding ended after {result.frames}: {result.input_path} may be'
          ' cut short (its last frames are missing from the outputs).',
          file=sys.stderr)
    status = 1
  if result.broken:
    listed = ', '.join(map(str, result.broken[:_BROKEN_FRAMES_LISTED]))
    if len(result.broken) > _BROKEN_FRAMES_LISTED:
      listed += f' and {len(result.broken) - _BROKEN_FRAMES_LISTED} more'
    print(f'{len(result.broken)} of {result.frames} frames could not be'
          ' decoded; they are black in the overlay video and have broken=1 in'
          f' the CSV: frames {listed}.', file=sys.stderr)
    status = 1
  return status
