"""The validation Dice of a GPU call's run against wall-clock time, from its TensorBoard events or its log.

A call of tools/device/train_polyp.sh returns `events.out.tfevents.polyp`, `train.log` and `run.json`. The events are
the record; the log is read when they did not come back (the first call's events outgrew the 16 MiB limit of $OUT):
its absl lines `I<MMDD> <HH:MM:SS.micro> ... step <N> validation: ... dice <D>` hold the same numbers, stamped in the
GPU machine's local time, UTC.
"""
import dataclasses
import datetime
import json
import os
import re

from tensorboard.backend.event_processing import event_accumulator

EVENTS_NAME = 'events.out.tfevents.polyp'
LOG_NAME = 'train.log'
RUN_NAME = 'run.json'
_VALIDATION_LINE = re.compile(r'^I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .* step (\d+) validation: .*\bdice ([0-9.]+)')


@dataclasses.dataclass(frozen=True)
class Point:
  step: int
  wall_time: float  # Seconds since the epoch.
  dice: float


def from_events(path: str) -> list[Point]:
  """Tag 'val/dice' of one events file, or of every events file of a folder in order (a resumed workdir's)."""
  events = event_accumulator.EventAccumulator(path)
  events.Reload()
  return [Point(e.step, e.wall_time, e.value) for e in events.Scalars('val/dice')]


def from_log(path: str, process_start: float) -> list[Point]:
  """The log's validation lines; the date comes from `process_start` (a run that passes midnight rolls over)."""
  day = datetime.datetime.fromtimestamp(process_start, datetime.timezone.utc).replace(
      hour=0, minute=0, second=0, microsecond=0).timestamp()
  points = []
  with open(path, errors='replace') as f:
    for line in f:
      match = _VALIDATION_LINE.match(line)
      if not match:
        continue
      hours, minutes, seconds, step, dice = match.groups()
      wall_time = day + 3600 * int(hours) + 60 * int(minutes) + float(seconds)
      while wall_time < (points[-1].wall_time if points else process_start):
        wall_time += 86400
      points.append(Point(int(step), wall_time, float(dice)))
  return points


def read(run_dir: str, process_start: float | None) -> list[Point]:
  """A call's folder: its recipe run's events where they came back, else its log. A workdir's tensorboard/: its events
  (`process_start` unused)."""
  events = os.path.join(run_dir, EVENTS_NAME)
  if os.path.exists(events):
    return from_events(events)  # The file alone: the folder also holds the baseline's events.
  log = os.path.join(run_dir, LOG_NAME)
  if os.path.exists(log) and process_start is not None:
    return from_log(log, process_start)
  if any('tfevents' in name for name in os.listdir(run_dir)):
    return from_events(run_dir)
  raise FileNotFoundError(f'{run_dir} holds neither {EVENTS_NAME}, {LOG_NAME} nor TensorBoard events: pass the '
                          'folder a GPU call of tools/device/train_polyp.sh returned, or a workdir\'s tensorboard/.')


def read_run(run_dir: str) -> dict | None:
  """A call folder's `run.json` (process_start, training_end, ...); None for a folder without one (a workdir's
  tensorboard/)."""
  path = os.path.join(run_dir, RUN_NAME)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def minutes_across_processes(run_dirs: list[str]) -> list[tuple[float, float]]:
  """(minutes, validation Dice) of one run trained by the processes whose call folders are `run_dirs`, in order.

  Each folder holds `run.json` (`process_start`, `training_end`: the process's start and its final checkpoint) and
  that process's events or log. A process's minutes count from its own start, after the minutes of the processes
  before it, so a run stopped at a call's deadline and resumed in the next reads as the time its processes took,
  without the pause between them.
  """
  points, offset = [], 0.0
  for run_dir in run_dirs:
    run = read_run(run_dir)
    if run is None:
      raise FileNotFoundError(f'{run_dir} has no {RUN_NAME}: minutes need the process start a GPU call records.')
    start = run['process_start']
    points += [(offset + (p.wall_time - start) / 60, p.dice) for p in read(run_dir, start)]
    offset += (run['training_end'] - start) / 60
  return points
