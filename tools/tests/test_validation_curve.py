"""The Results curve read back from what GPU calls return: their recipe run's events, or the log without them."""
import datetime
import json
import os

import pytest

from resunetpp_jax.training import monitoring
from tools.release import validation_curve

# 2026-12-04 23:58:00 UTC: the run below passes midnight.
_START = datetime.datetime(2026, 12, 4, 23, 58, tzinfo=datetime.timezone.utc).timestamp()
_LOG = """\
/tmp/site/albumentations/check_version.py:147: UserWarning: Error fetching version info
I1204 23:59:10.500000 1405 monitoring.py:165] step 50/3645 epoch 0.62 loss 5.5914 dice 0.3026 img/s 12.3 ETA 2:56:39
I1204 23:59:21.153814 1405 train.py:199] step 81 validation: loss 2.7330 dice 0.4371 iou 0.2797 precision 0.3345
I1205 00:01:05.250000 1405 train.py:199] step 162 validation: loss 2.6325 dice 0.3993 iou 0.2494 precision 0.2625
"""


def test_the_log_gives_each_validation_with_its_wall_time_across_midnight(tmp_path):
  (tmp_path / 'train.log').write_text(_LOG)
  points = validation_curve.read(os.fspath(tmp_path), _START)
  assert [(p.step, p.dice) for p in points] == [(81, 0.4371), (162, 0.3993)]
  assert [p.wall_time - _START for p in points] == pytest.approx([81.153814, 185.25])


def test_the_call_events_are_read_alone_not_mixed_with_the_baseline_events(tmp_path):
  for name, dice in (('polyp', 0.8), ('unet', 0.6)):
    writer = monitoring.MetricWriter(os.fspath(tmp_path / name), enabled=True)
    writer.write_scalars(10, {'val/dice': dice})
    writer.close()
    (events,) = os.listdir(tmp_path / name)
    os.rename(tmp_path / name / events, tmp_path / f'events.out.tfevents.{name}')
  (tmp_path / 'train.log').write_text(_LOG)  # Not read: the events came back.
  assert [(p.step, p.dice) for p in validation_curve.read(os.fspath(tmp_path), _START)] == [
      (10, pytest.approx(0.8))]


def test_a_folder_without_events_or_log_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    validation_curve.read(os.fspath(tmp_path), _START)


def test_a_run_resumed_in_a_second_process_continues_after_the_first_process_minutes(tmp_path):
  first, second = tmp_path / 'first', tmp_path / 'second'
  first.mkdir()
  second.mkdir()
  (first / 'train.log').write_text(_LOG)  # Validations 81.15 s and 185.25 s after its start.
  (first / 'run.json').write_text(json.dumps({'process_start': _START, 'training_end': _START + 240}))
  (second / 'train.log').write_text(
      'I1205 01:00:30.000000 7 train.py:235] step 243 validation: loss 2.6 dice 0.5000 iou 0.3\n')
  resumed = _START + 3720  # 58 minutes after the first process ended.
  (second / 'run.json').write_text(json.dumps({'process_start': resumed, 'training_end': resumed + 60}))
  points = validation_curve.minutes_across_processes([os.fspath(first), os.fspath(second)])
  assert [d for _, d in points] == [0.4371, 0.3993, 0.5]
  assert [m for m, _ in points] == pytest.approx([81.153814 / 60, 185.25 / 60, 4 + 0.5])
