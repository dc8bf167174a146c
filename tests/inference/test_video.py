"""Video in, overlay video and per-frame CSV out: on a synthetic polyp passing through the picture.

The video pans across one frame of the synthetic renderer, so the polyp enters, crosses and leaves the
picture and the truth of every frame is known. A model trained for a few steps cannot segment it, so the
video plumbing is tested with an oracle network run through `predictor_lib.Predictor`: it returns the truth of
the rendered frame nearest to its input, and the CSV must then follow the rendered truth exactly.
"""
import csv
import json
import os
import subprocess
import sys
import threading
import weakref

from absl.testing import flagsaver
import cv2
from flax import nnx
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from helpers.tiny_runs import REPO_DIR
from resunetpp_jax import errors
from resunetpp_jax.data.synthetic_polyps import render
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.inference import video

HEIGHT, WIDTH = 64, 80
PAN_STEP = 12  # pixels the camera moves per frame
NUM_FRAMES = 21  # seed 0: the polyp is in frames 4-11 only
FPS = 29.97
BROKEN_FRAME = 7


@pytest.fixture(scope='module')
def pan():
  """(frames uint8 (T, H, W, 3) RGB, truth bool (T, H, W)): a camera panning across one rendered picture."""
  image, mask = render.render(np.random.default_rng(0), HEIGHT, WIDTH + PAN_STEP * (NUM_FRAMES - 1))
  windows = [slice(PAN_STEP * t, PAN_STEP * t + WIDTH) for t in range(NUM_FRAMES)]
  frames = np.stack([image[:, window] for window in windows])
  truth = np.stack([mask[:, window] for window in windows])
  present = truth.any(axis=(1, 2))
  assert present.any() and not present.all() and present[BROKEN_FRAME]
  return frames, truth


def _write_video(path, frames, fourcc: str):
  writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
  assert writer.isOpened()
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


@pytest.fixture(scope='module')
def mp4_path(pan, tmp_path_factory):
  path = tmp_path_factory.mktemp('video') / 'pan.mp4'
  _write_video(path, pan[0], 'mp4v')
  return path


@pytest.fixture(scope='module')
def broken_avi_path(pan, tmp_path_factory):
  """Motion JPEG with the headers of frame BROKEN_FRAME's JPEG zeroed: that frame cannot be decoded."""
  path = tmp_path_factory.mktemp('video') / 'broken.avi'
  _write_video(path, pan[0], 'MJPG')
  data = bytearray(path.read_bytes())
  starts = [k for k in range(len(data) - 2) if data[k:k + 3] == b'\xff\xd8\xff']
  assert len(starts) == NUM_FRAMES
  start, end = starts[BROKEN_FRAME], starts[BROKEN_FRAME + 1]
  data[start + 2:(start + end) // 2] = bytes((end - start) // 2 - 2)
  path.write_bytes(bytes(data))
  return path


class Oracle(nnx.Module):
  """Stands in for the network: the truth mask of the rendered frame nearest to the input, as +-40 logits."""

  def __init__(self, frames: np.ndarray, truth: np.ndarray):
    self.frames = nnx.Variable(jnp.asarray(frames, jnp.float32) / 255.0)
    self.truth = nnx.Variable(jnp.asarray(truth))

  def __call__(self, x):
    distances = jnp.sum((x[:, None] - self.frames[...][None]) ** 2, axis=(2, 3, 4))
    truth = self.truth[...][jnp.argmin(distances, axis=1)]
    return [jnp.where(truth, 40.0, -40.0)[..., None]]  # the heads' list; Predictor takes the last


@pytest.fixture(scope='module')
def oracle(pan):
  """A Predictor of the oracle at the video's size (no resizing), batches of 4: 21 frames span 6 calls."""
  config = ml_collections.ConfigDict({'image_size': (HEIGHT, WIDTH), 'num_classes': 1})
  return predictor_lib.Predictor(Oracle(*pan), config, batch_size=4)


def _read_video(path) -> tuple[np.ndarray, float]:
  capture = cv2.VideoCapture(os.fspath(path))
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
  fps = capture.get(cv2.CAP_PROP_FPS)
  capture.release()
  return np.stack(frames), fps


def _read_csv(path) -> list[dict[str, str]]:
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == video.CSV_COLUMNS
    return list(reader)


def _expected_boxes(mask: np.ndarray) -> list[list[int]]:
  """[x, y, w, h] of the 8-connected components, largest first, computed with scipy instead of OpenCV."""
  labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
  boxes = [(-int((labels[rows, cols] == k).sum()), [cols.start, rows.start, cols.stop - cols.start,
                                                     rows.stop - rows.start])
           for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1)]
  return [box for _, box in sorted(boxes, key=lambda pair: pair[0])]


def _assert_row_follows_truth(row: dict[str, str], index: int, truth: np.ndarray):
  assert int(row['frame']) == index
  assert float(row['time_s']) == pytest.approx(index / FPS, abs=5e-4)
  assert row['broken'] == '0'
  assert row['polyp'] == str(int(truth.any()))
  assert float(row['foreground_fraction']) == pytest.approx(truth.mean(), abs=1e-6)
  assert float(row['max_probability']) == (1.0 if truth.any() else 0.0)
  assert json.loads(row['boxes']) == _expected_boxes(truth)


def test_is_video_goes_by_the_extension():
  assert all(video.is_video(name) for name in ('a.mp4', 'b.AVI', 'c.mov', 'd.mkv', 'dir/e.webm'))
  assert not any(video.is_video(name) for name in ('a.png', 'b.jpg', 'mp4', 'folder'))


def test_connected_boxes_of_a_hand_drawn_mask():
  mask = np.zeros((10, 12), bool)
  mask[1:3, 1:4] = True  # 6 pixels at x=1, y=1, 3 wide, 2 high
  mask[5:9, 6:11] = True  # 20 pixels
  mask[9, 11] = True  # touches the 20 diagonally: one 8-connected component of 21, 6 wide, 5 high
  mask[0, 11] = True  # a single pixel
  assert video.connected_boxes(mask) == [[6, 5, 6, 5], [1, 1, 3, 2], [11, 0, 1, 1]]
  assert video.connected_boxes(np.zeros((4, 4), bool)) == []


@pytest.mark.parametrize('seed', range(4))
def test_connected_boxes_of_random_blobs_agree_with_scipy(seed):
  """Blobs at odd and even offsets with ties in area: the boxes are labelled within the mask's bounding box."""
  rng = np.random.default_rng(seed)
  mask = np.zeros((45, 61), bool)
  for _ in range(12):
    y, x = rng.integers(0, 45), rng.integers(0, 61)
    mask[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
  assert video.connected_boxes(mask) == _expected_boxes(mask)
  assert len(_expected_boxes(mask)) > 3


def test_temporal_smoothing_by_hand():
  smooth = video.TemporalSmoothing(0.5)
  maps = [np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]), np.array([[1.0, 0.0]])]
  results = [smooth(m).copy() for m in maps]
  # s0 = p0; s1 = 0.5 s0 + 0.5 p1; s2 = 0.5 s1 + 0.5 p2.
  np.testing.assert_allclose(results, [[[0.0, 1.0]], [[0.5, 1.0]], [[0.75, 0.5]]])
  np.testing.assert_array_equal(video.TemporalSmoothing(0.0)(maps[0]), maps[0])
  with pytest.raises(ValueError, match=r'\[0, 1\)'):
    video.TemporalSmoothing(1.0)


class FakeCapture:
  """cv2.VideoCapture's read() and POS_MSEC over a script: a timestamp in ms per decoded frame, None per failed read."""

  def __init__(self, script):
    self._script = list(script)
    self._msec = 0.0

  def read(self):
    if not self._script:
      return False, None
    msec = self._script.pop(0)
    if msec is None:
      return False, None
    self._msec = msec
    return True, np.zeros((2, 3, 3), np.uint8)

  def get(self, prop):
    assert prop == cv2.CAP_PROP_POS_MSEC
    return self._msec


@pytest.mark.parametrize('script, expected', [
    ([0, 40, None, 120, 160], '01x34'),  # a failed read: its timestamp is missing
    ([0, 40, 120], '01x3'),  # a frame the decoder dropped without a failed read
    ([0, 0, None, None, 0], '01xx4'),  # no timestamps: the failed reads are counted
    ([0, 40, 3_600_000, 3_600_040], '0123'),  # a jump of an hour is a discontinuity, not lost frames
    ([0, 40, None, None], '01'),  # failed reads at the end: the stream has ended
])
def test_read_frames_numbers_frames_by_timestamp_and_fills_gaps(script, expected):
  info = video.VideoInfo(fps=25.0, width=3, height=2, frame_count=0)
  frames = list(video.read_frames(FakeCapture(script), info, 'fake.mp4'))
  assert [frame.index for frame in frames] == list(range(len(expected)))
  assert ''.join('x' if frame.image is None else str(frame.index) for frame in frames) == expected


def test_progress_logs_frames_per_second_and_eta(monkeypatch, caplog):
  clock = iter([100.0, 105.0, 120.0])  # start, an update too soon to log, an update 20 s after the start
  monkeypatch.setattr(video.time, 'monotonic', lambda: next(clock))
  progress = video.FrameProgress(total=100)  # no terminal under pytest: log lines
  with caplog.at_level('INFO'):
    progress.update(4)
    progress.update(10)
  # 10 frames in 20 s: 0.5 frames/s; 90 frames left: 180 s.
  assert [record.getMessage() for record in caplog.records] == ['frame 10/100 0.50 frames/s ETA 03:00']


def test_overlay_video_and_csv_follow_the_rendered_polyp(oracle, pan, mp4_path, tmp_path):
  frames, truth = pan
  result = video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path))
  assert (result.frames, list(result.broken)) == (NUM_FRAMES, [])
  assert sorted(os.listdir(tmp_path)) == ['pan.csv', 'pan_overlay.mp4']  # the .partial files renamed
  written, fps = _read_video(tmp_path / 'pan_overlay.mp4')
  assert written.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
  assert fps == pytest.approx(FPS, abs=1e-3)
  rows = _read_csv(tmp_path / 'pan.csv')
  assert len(rows) == NUM_FRAMES
  for index, (row, frame_truth) in enumerate(zip(rows, truth)):
    _assert_row_follows_truth(row, index, frame_truth)
  # Each written frame tints its own frame's mask magenta (green falls to 60% or less, the outline to 0)
  # and leaves the rest as it was (the encoder loses a few percent).
  decoded, _ = _read_video(mp4_path)
  green = lambda image, region: image[region][:, 1].mean()
  for frame, mask, out in zip(decoded, truth, written):
    assert green(out, ~mask) / green(frame, ~mask) > 0.9
    if mask.any():
      assert green(out, mask) / green(frame, mask) < 0.7


def test_a_broken_frame_is_black_and_marked_and_the_rest_follows(oracle, pan, broken_avi_path, tmp_path):
  result = video.segment_video(oracle, os.fspath(broken_avi_path), os.fspath(tmp_path))
  assert (result.frames, list(result.broken)) == (NUM_FRAMES, [BROKEN_FRAME])
  written, _ = _read_video(tmp_path / 'broken_overlay.mp4')
  assert len(written) == NUM_FRAMES
  assert written[BROKEN_FRAME].mean() < 2 and written[BROKEN_FRAME - 1].mean() > 50
  rows = _read_csv(tmp_path / 'broken.csv')
  assert len(rows) == NUM_FRAMES
  assert rows[BROKEN_FRAME] == {
      'frame': str(BROKEN_FRAME), 'time_s': f'{BROKEN_FRAME / FPS:.3f}', 'broken': '1', 'polyp': '',
      'foreground_fraction': '', 'max_probability': '', 'boxes': ''}
  for index, (row, frame_truth) in enumerate(zip(rows, pan[1])):
    if index != BROKEN_FRAME:
      _assert_row_follows_truth(row, index, frame_truth)


def test_temporal_smoothing_lags_the_polyp_by_hand(oracle, pan, mp4_path, tmp_path):
  alpha = 0.6
  rows = _read_csv(video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path),
                                       smoothing=alpha).csv_path)
  first = int(np.argmax(pan[1].any(axis=(1, 2))))  # frame 4: no polyp before it
  # Before it 0; in it 0.6 * 0 + 0.4 * 1 = 0.4, below 0.5: no polyp yet; in the next frame a pixel that
  # stayed in the polyp has 0.6 * 0.4 + 0.4 * 1 = 0.64.
  assert [row['max_probability'] for row in rows[first - 1:first + 2]] == ['0.0000', '0.4000', '0.6400']
  assert [row['polyp'] for row in rows[first - 1:first + 2]] == ['0', '0', '1']
  average = pan[1][0].astype(np.float64)
  for row, frame_truth in zip(rows[1:], pan[1][1:]):
    average = alpha * average + (1 - alpha) * frame_truth
    assert float(row['max_probability']) == pytest.approx(average.max(), abs=1e-4)
    assert row['polyp'] == str(int((average >= 0.5).any()))


def test_frames_stream_through_without_piling_up(oracle, mp4_path, tmp_path, monkeypatch):
  alive, most_alive = [], []
  read_frames = video.read_frames

  def watched(*args):
    for frame in read_frames(*args):
      most_alive.append(sum(ref() is not None for ref in alive))
      alive.append(weakref.ref(frame.image))
      yield frame

  monkeypatch.setattr(video, 'read_frames', watched)
  video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path))
  assert len(most_alive) == NUM_FRAMES
  # The batch being segmented, the one decoded ahead and the one being filled, not the video.
  assert max(most_alive) < 3 * oracle.batch_size < NUM_FRAMES


@pytest.mark.parametrize('failing', ['decoder', 'model'])
def test_a_failure_midway_stops_every_thread_and_keeps_the_partial_csv(failing, oracle, mp4_path, tmp_path,
                                                                      monkeypatch):
  """A UserError of the decoder thread (e.g. the frame size changes) reaches the caller; one of the model stops
  the decoder. Either way no pipeline thread is left and the rows of the batches done stay in the .partial CSV."""
  read_frames, predict_proba = video.read_frames, oracle.predict_proba
  fail_at = 2 * oracle.batch_size + 1  # in the third batch

  def frames_then_failure(*args):
    for frame in read_frames(*args):
      if failing == 'decoder' and frame.index == fail_at:
        raise errors.UserError(f'frame {fail_at} fails')
      yield frame

  def predictions_then_failure(images, tta):
    calls.append(len(images))
    if failing == 'model' and len(calls) == 3:
      raise errors.UserError('the model fails on the third batch')
    return predict_proba(images, tta)

  calls = []
  monkeypatch.setattr(video, 'read_frames', frames_then_failure)
  monkeypatch.setattr(oracle, 'predict_proba', predictions_then_failure)
  with pytest.raises(errors.UserError, match='fails'):
    video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path))
  assert not [thread.name for thread in threading.enumerate() if thread.name.startswith('video-')]
  partial_csv, = tmp_path.glob('.pan.csv.*.partial.csv')
  assert not (tmp_path / 'pan.csv').exists()
  assert [row['frame'] for row in _read_csv(partial_csv)] == [
      str(k) for k in range(2 * oracle.batch_size)]


def test_an_unreadable_video_names_the_file(oracle, tmp_path):
  path = tmp_path / 'junk.mp4'
  path.write_bytes(b'not a video at all' * 100)
  with pytest.raises(errors.UserError, match=f'{path}: OpenCV cannot open it as a video'):
    video.segment_video(oracle, os.fspath(path), os.fspath(tmp_path / 'out'))


def test_frames_above_the_pixel_limit_are_refused_before_reading(oracle, mp4_path, tmp_path):
  with flagsaver.flagsaver(max_pixels=HEIGHT * WIDTH - 1):
    with pytest.raises(errors.UserError, match=f'{mp4_path} declares a {WIDTH}x{HEIGHT} image'):
      video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path / 'out'))
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_predict_command_line_on_a_video_with_a_broken_frame(trained_workdir, broken_avi_path, tmp_path):
  completed = subprocess.run(
      [sys.executable, '-m', 'resunetpp_jax.predict', f'--workdir={trained_workdir}',
       f'--input={broken_avi_path}', f'--output={tmp_path}', '--batch_size=4', '--temporal_smoothing=0.5'],
      cwd=REPO_DIR, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 1, completed.stderr
  assert f'{NUM_FRAMES} frames of {broken_avi_path} segmented' in completed.stdout
  assert f'1 of {NUM_FRAMES} frames could not be decoded' in completed.stderr
  assert f'in the CSV: frames {BROKEN_FRAME}.' in completed.stderr
  written, fps = _read_video(tmp_path / 'broken_overlay.mp4')
  assert written.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3) and fps == pytest.approx(FPS, abs=1e-3)
  rows = _read_csv(tmp_path / 'broken.csv')
  assert [row['broken'] for row in rows] == ['1' if k == BROKEN_FRAME else '0' for k in range(NUM_FRAMES)]


def _result(frames, declared, broken=()):
  return video.VideoResult('v.mp4', 'out/v_overlay.mp4', 'out/v.csv', video.VideoInfo(25.0, 4, 2, declared),
                           frames, list(broken), 1.0)


def test_no_frame_or_fewer_frames_than_declared_exit_1(capsys):
  assert video.report(_result(0, 0), step=1) == 1
  assert 'No frame of v.mp4 could be decoded' in capsys.readouterr().err
  assert video.report(_result(7, 10), step=1) == 1
  assert 'declares 10 frames; decoding ended after 7' in capsys.readouterr().err
  assert video.report(_result(10, 10), step=1) == 0


def test_a_link_at_the_old_partial_name_is_not_followed_and_outputs_are_not_replaced(oracle, mp4_path, tmp_path):
  """Two runs on one video into one folder used fixed '.partial' names: a link planted there, or the other run,
  received the rows. Now the temporary names are unique and created without following links."""
  target = tmp_path / 'precious.csv'
  target.write_text('keep me')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'pan.partial.csv').symlink_to(target)
  (out / 'pan_overlay.partial.mp4').symlink_to(target)
  result = video.segment_video(oracle, os.fspath(mp4_path), os.fspath(out))
  assert target.read_text() == 'keep me'
  assert len(_read_csv(result.csv_path)) == NUM_FRAMES
  assert sorted(os.listdir(out)) == ['pan.csv', 'pan.partial.csv', 'pan_overlay.mp4', 'pan_overlay.partial.mp4']
  before = (out / 'pan.csv').read_bytes()
  with pytest.raises(errors.UserError, match='2 outputs already exist: .*pass --overwrite'):
    video.segment_video(oracle, os.fspath(mp4_path), os.fspath(out), overwrite=False)
  assert (out / 'pan.csv').read_bytes() == before
  (out / 'pan.csv').unlink()
  (out / 'pan.csv').mkdir()  # A folder where the CSV goes: refused before any frame is decoded.
  with pytest.raises(errors.UserError, match='are folders where files should go: .*pan.csv'):
    video.segment_video(oracle, os.fspath(mp4_path), os.fspath(out))


def test_the_app_segments_a_video_as_predict_does_and_refuses_one_over_its_limit(oracle, mp4_path, tmp_path):
  """The app's Segment view hands a dropped video to its service: the same CSV and overlay video as `predict`,
  its private copy of the upload removed; a video over --max_video_mb is refused by name before any frame."""
  from resunetpp_jax.app import service as service_lib  # pylint: disable=import-outside-toplevel
  video.segment_video(oracle, os.fspath(mp4_path), os.fspath(tmp_path / 'predict'))
  service = service_lib.SegmentService(oracle, max_video_bytes=os.path.getsize(mp4_path))
  try:
    result = service.segment_video(os.fspath(mp4_path), 'pan.mp4', os.fspath(tmp_path / 'app'))
    assert result.frames == NUM_FRAMES and not list(result.broken)
    assert (tmp_path / 'app' / 'pan.csv').read_text() == (tmp_path / 'predict' / 'pan.csv').read_text()
    np.testing.assert_array_equal(_read_video(tmp_path / 'app' / 'pan_overlay.mp4')[0],
                                  _read_video(tmp_path / 'predict' / 'pan_overlay.mp4')[0])
    assert not any(files for _, _, files in os.walk(service.upload_root))
    too_small = service_lib.SegmentService(oracle, max_video_bytes=os.path.getsize(mp4_path) - 1)
    with pytest.raises(service_lib.UploadError, match='pan.mp4') as refused:
      too_small.segment_video(os.fspath(mp4_path), 'pan.mp4', os.fspath(tmp_path / 'refused'))
    too_small.close()
    assert refused.value.status == 413 and not (tmp_path / 'refused').exists()
  finally:
    service.close()
