r"""Scores a trained model on whole datasets at each image's ORIGINAL size.

  python -m resunetpp_jax.evaluate --workdir=WORKDIR \
      [--config=configs/polyp.py] [--checkpoint=best|latest|STEP] \
      [--datasets=kvasir_seg:pranet_test,cvc_300:all] \
      [--manual_dirs=NAME=DIR,...] \
      [--validation] [--tta] [--save_images] [--table=text|markdown]

Validation during training scores resized images; papers score predictions
resized back to the original masks, which is what this does. For every
NAME:SPLIT it writes WORKDIR/eval/NAME-SPLIT.json (NAME-SPLIT-tta.json with
--tta) holding:
  dice, iou, precision, recall: pooled over all pixels of the split, at 0.5;
  mean_dice, mean_iou: means over images of each image's Dice/IoU at 0.5
    (an image with empty ground truth and empty prediction scores 1);
  mdice, miou, weighted_fmeasure, smeasure, max_emeasure, mean_emeasure, mae:
    the numbers polyp papers report, on the 8-bit maps PraNet's MyTest.py
    saves (see literature_metrics.BenchmarkMetrics);
  images: one record per image (name, its scores, its pixel counts).
It prints a table of these per dataset/split, then the papers' table: one row
for the model, per dataset mDice, mIoU, F^w_beta, S_alpha, E^max_xi and MAE
(--table=markdown prints it ready for a README).
--save_images adds, per image, NAME-SPLIT/<image>.png (image | ground truth |
prediction, as the original wrote them) and <image>_overlay.png (yellow: polyp
found, green: missed, red: false alarm). --validation scores the config's
validation data instead (the carve-out of train_data, or validation_data;
validation.json): the place to compare TTA, models or recipes, since the test
sets choose nothing.

The model and its config come from the workdir; --config (default: the
workdir's own) only says where the data are (data_dir, manual_dirs) and which
sets to score by default (test_data); --manual_dirs adds to its manual_dirs.
"""
import itertools
import json
import os
from typing import Any, Iterable, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

from resunetpp_jax import checkpointing
from resunetpp_jax import cli
from resunetpp_jax import compilation_cache
from resunetpp_jax import config_validation
from resunetpp_jax import inference
from resunetpp_jax import literature_metrics
from resunetpp_jax import metrics
from resunetpp_jax import visualize
from resunetpp_jax.data import image_io
from resunetpp_jax.data import pipeline
from resunetpp_jax.data import specs

THRESHOLD = inference.THRESHOLD
_TABLE_COLUMNS = ('num_images', 'dice', 'iou', 'mean_dice', 'mean_iou',
                  'mdice', 'miou', 'precision', 'recall')
# The columns of PraNet's Table 1 (and the papers after it): key, text header,
# markdown header.
_PAPER_COLUMNS = (
    ('mdice', 'mDice', 'mDice'), ('miou', 'mIoU', 'mIoU'),
    ('weighted_fmeasure', 'F^w_β', 'F<sup>w</sup><sub>β</sub>'),
    ('smeasure', 'S_α', 'S<sub>α</sub>'),
    ('max_emeasure', 'E^max_ξ', 'E<sup>max</sup><sub>ξ</sub>'),
    ('mae', 'MAE', 'MAE'))


def score_image(probabilities: np.ndarray, ground_truth: np.ndarray,
                threshold: float = THRESHOLD) -> dict[str, Any]:
  """One image's scores at `threshold` and pixel counts; inputs at the same
  (H, W) size. `literature_metrics.BenchmarkMetrics` adds the papers' numbers.

  Args:
    probabilities: float (H, W) foreground probabilities.
    ground_truth: bool (H, W) mask.
    threshold: a pixel is predicted foreground when its probability >= this.
  """
  ground_truth = np.asarray(ground_truth, bool)
  predicted = probabilities >= threshold
  dice, iou = literature_metrics.per_image_dice_iou(predicted, ground_truth)
  return {
      'dice': dice, 'iou': iou,
      'tp': int(np.count_nonzero(predicted & ground_truth)),
      'fp': int(np.count_nonzero(predicted & ~ground_truth)),
      'fn': int(np.count_nonzero(~predicted & ground_truth)),
      'tn': int(np.count_nonzero(~predicted & ~ground_truth)),
  }


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Split-level scores at the threshold from `score_image` records.

  Pooled ratios and per-image means follow `metrics.summarize`, so they agree
  with the validation metrics of training on the same pixels.
  """
  if not records:
    raise ValueError('No image to summarize: the split is empty.')
  sums = {key: sum(record[key] for record in records)
          for key in ('tp', 'fp', 'fn', 'tn')}
  sums['dice_sum'] = sum(record['dice'] for record in records)
  sums['iou_sum'] = sum(record['iou'] for record in records)
  sums['num_images'] = len(records)
  return {'num_images': len(records), **metrics.summarize(sums)}


def evaluate_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
  """Split-level scores, the papers' included, of (probabilities, ground
  truth) pairs."""
  papers = literature_metrics.BenchmarkMetrics()
  records = [{**score_image(prob, truth), **papers.add(prob, truth)}
             for prob, truth in pairs]
  return {**summarize(records), **papers.results()}


def _batches(iterable: Iterable, size: int):
  iterator = iter(iterable)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def _safe_file_name(name: str) -> str:
  return name.replace(os.sep, '_').replace('/', '_')


def _write_pictures(folder: str, name: str, image: np.ndarray,
                    ground_truth: np.ndarray, predicted: np.ndarray):
  stem = os.path.join(folder, _safe_file_name(name))
  with open(f'{stem}.png', 'wb') as f:
    f.write(image_io.encode_png(
        visualize.side_by_side(image, ground_truth, predicted)))
  with open(f'{stem}_overlay.png', 'wb') as f:
    f.write(image_io.encode_png(
        visualize.error_overlay(image, ground_truth, predicted)))


def data_config(config: ml_collections.ConfigDict,
                manual_dirs: Mapping[str, str]) -> ml_collections.ConfigDict:
  """A copy of `config` whose manual_dirs holds (and prefers) `manual_dirs`."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.manual_dirs = specs.join_manual_dirs({
      **specs.parse_manual_dirs(config.manual_dirs, 'config.manual_dirs'),
      **manual_dirs})
  return config


def evaluate_split(predictor: inference.Predictor,
                   examples: pipeline.Examples, *,
                   tta: bool = False,
                   image_folder: str | None = None) -> dict[str, Any]:
  """Scores `predictor` on every image of `examples` (one dataset's split, or the validation data).

  Args:
    predictor: the trained model.
    examples: the images and masks scored.
    tta: average flipped predictions.
    image_folder: where to write the per-image pictures; None writes none.

  Returns:
    The summaries of `summarize` and `BenchmarkMetrics` plus 'images': the
    per-image records.
  """
  if image_folder:
    os.makedirs(image_folder, exist_ok=True)
  papers = literature_metrics.BenchmarkMetrics()
  records = []
  originals = pipeline.iterate_originals(examples)
  for batch in _batches(originals, predictor.batch_size):
    probabilities = predictor.predict_proba([x['image'] for x in batch], tta)
    for example, prob in zip(batch, probabilities):
      records.append({'name': example['name'],
                      'height': int(prob.shape[0]), 'width': int(prob.shape[1]),
                      **score_image(prob, example['mask']),
                      **papers.add(prob, example['mask'])})
      if image_folder:
        _write_pictures(image_folder, example['name'], example['image'],
                        example['mask'], prob >= THRESHOLD)
    logging.log_every_n_seconds(logging.INFO, '%s: %d images scored.', 10,
                                examples.describe(), len(records))
  if not records:
    raise ValueError(f'{examples.describe()} holds no image.')
  return {**summarize(records), **papers.results(), 'images': records}


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
  """A fixed-width table: one row per dataset/split."""
  header = ['dataset/split'] + list(_TABLE_COLUMNS)
  rows = []
  for result in results:
    row = [f'{result["dataset"]}/{result["split"]}']
    row += [str(result[c]) if c == 'num_images' else f'{result[c]:.4f}'
            for c in _TABLE_COLUMNS]
    rows.append(row)
  widths = [max(len(row[k]) for row in [header] + rows)
            for k in range(len(header))]
  lines = ['  '.join(cell.ljust(w) if k == 0 else cell.rjust(w)
                     for k, (cell, w) in enumerate(zip(row, widths)))
           for row in [header] + rows]
  return '\n'.join(lines)


def _paper_number(value: float) -> str:
  """Three decimals without the leading zero, as the papers print them."""
  text = f'{value:.3f}'
  return text[1:] if text.startswith('0.') else text


def format_paper_table(method: str, results: Sequence[Mapping[str, Any]],
                       markdown: bool = False) -> str:
  """The layout of the published tables (PraNet's Table 1): one row for
  `method`, per dataset/split the columns mDice, mIoU, F^w_beta, S_alpha,
  E^max_xi and MAE, three decimals.

  Args:
    method: the row's name.
    results: one result of `run` per dataset/split, in column order.
    markdown: a markdown table (the dataset named in its first column's
      header) instead of fixed-width text under a line of dataset names.
  """
  values = [method] + [_paper_number(result[key]) for result in results
                       for key, _, _ in _PAPER_COLUMNS]
  datasets = [f'{result["dataset"]}/{result["split"]}' for result in results]
  if markdown:
    header = ['Method'] + [
        f'{dataset} {title}' if k == 0 else title
        for dataset in datasets
        for k, (_, _, title) in enumerate(_PAPER_COLUMNS)]
    return '\n'.join(['| ' + ' | '.join(header) + ' |',
                      '| --- |' + ' ---: |' * (len(header) - 1),
                      '| ' + ' | '.join(values) + ' |'])
  # Every metric column one width, wide enough for the headers and for each
  # dataset's name over its group of columns.
  group = len(_PAPER_COLUMNS)
  longest = max(len(dataset) for dataset in datasets)
  width = max(max(len(title) for _, title, _ in _PAPER_COLUMNS),
              -(-(longest - 2 * (group - 1)) // group))
  method_width = max(len('method'), len(method))
  names = [' ' * method_width] + [
      dataset.ljust(group * width + 2 * (group - 1)) for dataset in datasets]
  header = ['method'.ljust(method_width)] + [
      title.rjust(width) for _ in datasets for _, title, _ in _PAPER_COLUMNS]
  row = [method.ljust(method_width)] + [value.rjust(width)
                                        for value in values[1:]]
  return '\n'.join('  '.join(cells).rstrip() for cells in (names, header, row))


def run(workdir: str | None, datasets: Sequence[specs.DataSpec],
        config: ml_collections.ConfigDict | None = None,
        checkpoint: str | int = 'best',
        manual_dirs: Mapping[str, str] | None = None, tta: bool = False,
        save_images: bool = False, batch_size: int = 8,
        model: str | None = None,
        output_dir: str | None = None,
        validation: bool = False) -> list[dict[str, Any]]:
  """Evaluates a model on `datasets` and writes one JSON per dataset/split.

  Args:
    workdir: the training workdir whose checkpoint is scored; None scores
      `model`, or the shipped model.
    datasets: (name, split) pairs; empty means the config's test_data.
    config: where the data are; None uses the workdir's saved config.
    checkpoint: 'best', 'latest' or a step.
    manual_dirs: dataset name -> its downloaded copy, beside (and before)
      config.manual_dirs.
    tta: average flipped predictions.
    save_images: write per-image pictures.
    batch_size: images per device call.
    model: without workdir, a model file (.onnx or .safetensors).
    output_dir: where the JSON files go; default WORKDIR/eval, or eval/
      without a workdir.
    validation: instead of `datasets`, score the config's validation data
      (its carve-out of train_data, or validation_data): where TTA, models
      or recipes are compared, as the test sets choose nothing.

  Returns:
    One result (the JSON written) per dataset/split.
  """
  if workdir is None and config is None:
    raise config_validation.ConfigError(
        'Without --workdir, give --config to say where the test sets are'
        ' (e.g. --config=configs/polyp.py --manual_dirs=NAME=FOLDER,...).')
  if validation and datasets:
    raise config_validation.ConfigError(
        '--validation scores the config\'s validation data and --datasets'
        ' names other sets: give one of them.')
  config = data_config(config or checkpointing.load_config(workdir),
                       manual_dirs or {})
  if not validation:
    datasets = datasets or specs.parse_data(config.test_data,
                                            'config.test_data', specs.LIST)
    if not datasets:
      raise config_validation.ConfigError(
          'Nothing to evaluate: give --datasets=NAME:SPLIT,... or set'
          ' config.test_data.')
  predictor = inference.Predictor.from_flags(workdir, model, checkpoint,
                                             batch_size)
  # (dataset, split, file stem, examples), each found (or prepared) before any is scored.
  targets = [_validation_target(config)] if validation else [
      (name, split, f'{name}-{split}',
       pipeline.examples(config, str(specs.DataSpec(name, split))))
      for name, split in datasets]
  output_dir = output_dir or os.path.join(workdir or '.', 'eval')
  os.makedirs(output_dir, exist_ok=True)
  results = []
  for name, split, stem, examples in targets:
    stem += '-tta' if tta else ''
    result = {
        'dataset': name, 'split': split, 'examples': examples.describe(),
        'model': predictor.config.model,
        # Which checkpoint of the workdir; a model file (or the shipped one) is one: its step says which.
        'checkpoint': str(checkpoint) if workdir else os.path.basename(model or 'shipped'),
        'checkpoint_step': predictor.step, 'tta': tta, 'threshold': THRESHOLD,
        **evaluate_split(
            predictor, examples, tta=tta,
            image_folder=os.path.join(output_dir, stem) if save_images
            else None),
    }
    path = os.path.join(output_dir, f'{stem}.json')
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)
    logging.info('Wrote %s.', path)
    results.append(result)
  return results


def _validation_target(config: ml_collections.ConfigDict
                       ) -> tuple[str, str, str, pipeline.Examples]:
  """('validation', 'carve-out' or the validation_data, file stem, examples), the datasets prepared."""
  pipeline.prepare_if_needed(config)  # The carve-out is drawn from the training data.
  examples = pipeline.validation_examples(config)
  if examples is None:
    raise config_validation.ConfigError(
        "--validation: the config has no validation data (validation_fraction=0"
        " and validation_data=''). Set one of them as in training, or give"
        ' --datasets.')
  split = 'carve-out' if config.validation_fraction > 0 else config.validation_data
  return 'validation', split, 'validation', examples


def define_flags():
  """The command line's flags; defined only when run as a program, so that
  importing this module next to other CLIs (main, predict) defines nothing."""
  flags.DEFINE_string(
      'workdir', None, 'The training workdir (config.json, checkpoints/);'
      ' without it, --model or the model shipped with the package.')
  flags.DEFINE_string(
      'model', None, 'Instead of --workdir: a model file (.onnx of'
      ' resunetpp_jax.export, or .safetensors of resunetpp_jax.pretrained).')
  flags.DEFINE_string(
      'output_dir', None, 'Where the JSON files go (default WORKDIR/eval, or'
      ' eval/ without --workdir).')
  config_flags.DEFINE_config_file(
      'config', None, 'Where the data are (data_dir, manual_dirs) and the'
      ' default test sets (test_data); default: the config saved in'
      ' --workdir.',
      lock_config=False)
  flags.DEFINE_string(
      'checkpoint', 'best',
      "'best' (highest validation Dice), 'latest' or a step.")
  flags.DEFINE_list(
      'datasets', None, 'NAME:SPLIT items to evaluate, e.g. kvasir_seg:test,'
      'cvc_clinicdb:all; default: the config\'s test_data.')
  flags.DEFINE_list(
      'manual_dirs', [], 'NAME=FOLDER items: the downloaded copy of each'
      ' dataset that config.manual_dirs lacks (needed until it is prepared).')
  flags.DEFINE_bool(
      'validation', False, "Score the config's validation data (its carve-out"
      ' of train_data, or validation_data) instead of test sets: compare TTA,'
      ' models or recipes there; the test sets choose nothing.')
  flags.DEFINE_bool(
      'tta', False, 'Average the predictions of the image and its left-right'
      ' and upside-down flips.')
  flags.DEFINE_bool(
      'save_images', False, 'Write image | truth | prediction and an error'
      ' overlay per image.')
  flags.DEFINE_integer('batch_size', 8, 'Images per device call.')
  flags.DEFINE_enum(
      'table', 'text', ['text', 'markdown'], "Layout of the papers' table"
      ' printed last: fixed-width text, or markdown for a README.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  datasets = specs.parse_data(args.datasets or [], '--datasets', specs.LIST)
  manual_dirs = specs.parse_manual_dirs(args.manual_dirs, '--manual_dirs')
  checkpoint = inference.parse_checkpoint(args.checkpoint)
  config = args.config or (
      checkpointing.load_config(args.workdir) if args.workdir else None)
  if config is not None:
    compilation_cache.enable(config.compilation_cache_dir)
  results = run(args.workdir, datasets, config, checkpoint=checkpoint,
                manual_dirs=manual_dirs, tta=args.tta,
                save_images=args.save_images, batch_size=args.batch_size,
                model=args.model, output_dir=args.output_dir,
                validation=args.validation)
  source = (f'Checkpoint {args.checkpoint} of {args.workdir}' if args.workdir
            else args.model or 'The shipped model')
  print(f'{source} (step {results[0]["checkpoint_step"]}), predictions at'
        f' original size{", TTA" if args.tta else ""}:')
  print(format_table(results))
  print()
  print(format_paper_table(results[0]['model'], results,
                           markdown=args.table == 'markdown'))


if __name__ == '__main__':
  define_flags()
  cli.run(main)
