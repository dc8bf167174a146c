r"""The README's Results figures: validation Dice against wall-clock minutes (or steps), and a few test predictions.

  python -m tools.release.results_figures --run=DIR[,DIR2] --model=resunetpp_jax/weights/polyp.safetensors \
      --images=../shared/data/Kvasir-SEG --names=NAME1,NAME2,NAME3 --output=docs/

`--run` holds what tools/device/train_polyp.sh returned: `run.json` and `events.out.tfevents.polyp` (or, where
events did not come back, `train.log`; tools/release/validation_curve.py). Minutes count from the training process's start
(`run.json`'s process_start), so compile and data preparation are in the curve. A run stopped at one call's deadline
and resumed in the next gives one folder per process, in order: its minutes are the time its processes took
(`validation_curve.minutes_across_processes`). A run resumed across processes without those files (paused,
preempted) has no such span: `--x=steps --run=WORKDIR/tensorboard` plots against the step.
The prediction figure has one row per image: image | ground truth | prediction at the image's original size, with
its Dice. Needs the `figures` extra (matplotlib) and tensorboard (in the `test` extra).
"""
import os

from absl import app
from absl import flags
import matplotlib
import numpy as np

from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib
from tools.release import validation_curve

matplotlib.use('Agg')
from matplotlib import pyplot  # pylint: disable=g-import-not-at-top,wrong-import-position

_RUN = flags.DEFINE_list('run', None, 'Folder with events.out.tfevents.polyp and run.json; several: the processes '
                         'of one run, in order.', required=True)
_MODEL = flags.DEFINE_string('model', None, 'Model file (.safetensors or .onnx); default: the shipped one.')
_IMAGES = flags.DEFINE_string('images', None, 'A dataset folder with images/ and masks/.', required=True)
_NAMES = flags.DEFINE_list('names', None, 'Image names (no extension) of test images to show.', required=True)
_OUTPUT = flags.DEFINE_string('output', 'docs', 'Folder for the two PNG files.')
_X_AXIS = flags.DEFINE_enum('x', 'minutes', ['minutes', 'steps'],
                            "The curve's x axis: 'minutes' (--run: the calls' folders, each with run.json), "
                            "'steps' also for a run resumed without them (--run: its workdir's tensorboard/).")


def plot_validation_dice(run_dirs: list[str], path: str, x_axis: str = 'minutes') -> list[tuple[float, float]]:
  """Writes the curve; returns its (minutes or step, val Dice) points."""
  if x_axis == 'minutes':
    points = validation_curve.minutes_across_processes(run_dirs)
    label = ('minutes since the training process started' if len(run_dirs) == 1 else
             "minutes in the training processes (the pause between them left out)")
  else:
    points = []
    for run_dir in run_dirs:  # A workdir's tensorboard/ has no run.json: steps only.
      run = validation_curve.read_run(run_dir)
      points += [(p.step, p.dice) for p in validation_curve.read(run_dir, run and run['process_start'])]
    label = 'training step'
  figure, axes = pyplot.subplots(figsize=(6, 3.5))
  axes.plot(*zip(*points), marker='o')
  axes.set_xlim(left=0)  # Minutes: the start-up (data, compile) before the first point shows.
  axes.set_xlabel(label)
  axes.set_ylabel('validation Dice (carve-out, training size)')
  axes.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  return points


def _find(folder: str, name: str) -> str:
  for extension in image_io.IMAGE_EXTENSIONS:
    path = os.path.join(folder, name + extension)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f'No image {name}.* in {folder}.')


def plot_predictions(predictor: predictor_lib.Predictor, folder: str, names: list[str], path: str) -> list[float]:
  """Writes image | truth | prediction rows; returns each image's Dice."""
  figure, axes = pyplot.subplots(len(names), 1, figsize=(9, 3 * len(names)), squeeze=False)
  scores = []
  for row, name in zip(axes[:, 0], names):
    image = image_io.read_image(_find(os.path.join(folder, 'images'), name))
    truth = image_io.read_mask(_find(os.path.join(folder, 'masks'), name))
    predicted = predictor.predict_mask(image)
    scores.append(2 * np.count_nonzero(predicted & truth) / max(1, predicted.sum() + truth.sum()))
    row.imshow(visualize.side_by_side(image, truth, predicted))
    row.set_title(f'{name}: image | ground truth | prediction (Dice {scores[-1]:.3f})', fontsize=9)
    row.axis('off')
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  return scores


def main(argv):
  del argv
  os.makedirs(_OUTPUT.value, exist_ok=True)
  curve = os.path.join(_OUTPUT.value, f'val_dice_vs_{_X_AXIS.value}.png')
  points = plot_validation_dice(_RUN.value, curve, _X_AXIS.value)
  unit = ' min' if _X_AXIS.value == 'minutes' else ''
  print(f'{curve}: ' + ', '.join(f'{x:g}{unit} {d:.3f}' for x, d in points))
  predictor = predictor_lib.Predictor.from_flags(None, _MODEL.value)
  figure = os.path.join(_OUTPUT.value, 'predictions.png')
  scores = plot_predictions(predictor, _IMAGES.value, _NAMES.value, figure)
  print(f'{figure}: Dice ' + ', '.join(f'{s:.3f}' for s in scores))


if __name__ == '__main__':
  app.run(main)
