"""evaluate: per-image and split scores on hand-made masks; the CLI on a trained run.

`trained_workdir` (a few steps of the real trainer on synthetic data, tiny
model) is shared with test_predict.py through a folder of the session's
temporary directory, so the session trains once.
"""
import itertools
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy import ndimage

from resunetpp_jax import errors
from resunetpp_jax import visualize
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.config import defaults
from resunetpp_jax.data import pipeline
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.evaluation import literature_metrics
from resunetpp_jax.evaluation import metrics
from resunetpp_jax.evaluation import runner
from resunetpp_jax.evaluation import scoring
from resunetpp_jax.evaluation import tables
from resunetpp_jax.inference import predictor as predictor_lib

# 4x4 ground truth: the 2x2 top-left square.
GROUND_TRUTH = np.zeros((4, 4), bool)
GROUND_TRUTH[:2, :2] = True
# Three polyp pixels found (0.9), one missed (0.2), one false alarm (0.6).
PROBABILITIES = np.full((4, 4), 0.2, np.float32)
PROBABILITIES[0, :2] = PROBABILITIES[1, 0] = 0.9
PROBABILITIES[3, 3] = 0.6


def _record(probabilities, ground_truth):
  """One image's record as evaluate_split writes it."""
  return {**scoring.score_image(probabilities, ground_truth),
          **literature_metrics.BenchmarkMetrics().add(probabilities,
                                                      ground_truth)}


def test_score_image_at_threshold_and_over_pranet_thresholds():
  record = _record(PROBABILITIES, GROUND_TRUTH)
  assert (record['tp'], record['fp'], record['fn'], record['tn']) == (3, 1, 1, 11)
  assert record['dice'] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
  assert record['iou'] == pytest.approx(3 / 5)
  # PraNet levels: 0.2 -> 0, 0.6 -> round(255 * 0.4 / 0.7) = 146, 0.9 -> 255.
  # Threshold level 0: all 16 pixels foreground (TP 4); levels 1..146: the
  # four >= 0.6 (TP 3); levels 147..255: the three at 0.9 (TP 3).
  dice_levels = [2 * 4 / (4 + 16)] + [6 / 8] * 146 + [6 / 7] * 109
  iou_levels = [4 / 16] + [3 / 5] * 146 + [3 / 4] * 109
  assert record['mdice'] == pytest.approx(np.mean(dice_levels))
  assert record['miou'] == pytest.approx(np.mean(iou_levels))


def test_empty_ground_truth_and_empty_prediction_is_perfect_at_threshold():
  record = _record(np.full((4, 4), 0.1, np.float32), np.zeros((4, 4), bool))
  assert (record['tp'], record['fp'], record['fn'], record['tn']) == (0, 0, 0, 16)
  assert (record['dice'], record['iou']) == (1.0, 1.0)
  # The toolbox scores 0 whenever nothing is found, so 0 for empty truth.
  assert (record['mdice'], record['miou']) == (0.0, 0.0)


def test_false_alarm_on_empty_ground_truth_scores_zero():
  probabilities = np.zeros((4, 4), np.float32)
  probabilities[1:3, 1:3] = 0.7
  record = _record(probabilities, np.zeros((4, 4), bool))
  assert (record['tp'], record['fp'], record['fn']) == (0, 4, 0)
  assert (record['dice'], record['iou'], record['mdice'], record['miou']) == (
      0.0, 0.0, 0.0, 0.0)


def test_empty_prediction_of_a_polyp_scores_zero_at_threshold():
  record = _record(np.full((4, 4), 0.3, np.float32), GROUND_TRUTH)
  assert (record['tp'], record['fp'], record['fn']) == (0, 0, 4)
  assert (record['dice'], record['iou']) == (0.0, 0.0)
  # A constant map is level 0 everywhere: only threshold 0 finds anything,
  # and there every pixel is foreground.
  assert record['mdice'] == pytest.approx(2 * 4 / (4 + 16) / 256)
  assert record['miou'] == pytest.approx(4 / 16 / 256)


def test_evaluate_pairs_pools_pixels_and_averages_images():
  empty = np.zeros((4, 4), bool)
  summary = scoring.evaluate_pairs([
      (PROBABILITIES, GROUND_TRUTH),  # tp 3, fp 1, fn 1; Dice 0.75, IoU 0.6.
      (np.full((4, 4), 0.1, np.float32), empty),  # Nothing: Dice = IoU = 1.
      (np.full((4, 4), 0.3, np.float32), GROUND_TRUTH),  # fn 4: Dice = IoU = 0.
  ])
  tp, fp, fn = 3, 1, 1 + 4
  assert summary['num_images'] == 3
  assert summary['dice'] == pytest.approx(2 * tp / (2 * tp + fp + fn))
  assert summary['iou'] == pytest.approx(tp / (tp + fp + fn))
  assert summary['precision'] == pytest.approx(tp / (tp + fp))
  assert summary['recall'] == pytest.approx(tp / (tp + fn))
  assert summary['mean_dice'] == pytest.approx((0.75 + 1 + 0) / 3)
  assert summary['mean_iou'] == pytest.approx((0.6 + 1 + 0) / 3)
  first = _record(PROBABILITIES, GROUND_TRUTH)
  assert summary['mdice'] == pytest.approx(
      (first['mdice'] + 0 + 2 * 4 / 20 / 256) / 3)
  assert summary['miou'] == pytest.approx((first['miou'] + 0 + 4 / 16 / 256) / 3)


def test_scores_agree_with_the_training_metrics_on_the_same_pixels():
  rng = np.random.default_rng(0)
  probabilities = rng.uniform(0.01, 0.99, (5, 8, 12)).astype(np.float32)
  truths = rng.uniform(size=(5, 8, 12)) < 0.3
  truths[1] = False
  probabilities[1] = 0.2  # Empty truth, empty prediction.
  summary = scoring.evaluate_pairs(zip(probabilities, truths))
  logits = jnp.log(probabilities / (1 - probabilities))[..., None]
  training = metrics.summarize(metrics.segmentation_sums(
      logits, jnp.asarray(truths, jnp.float32)[..., None]))
  for key, value in training.items():
    assert summary[key] == pytest.approx(value, rel=1e-6), key


def test_summarize_rejects_an_empty_split():
  with pytest.raises(ValueError, match='split is empty'):
    scoring.summarize([])


def test_manual_dirs_flag_adds_to_and_overrides_the_configs():
  config = defaults.get_default_config()
  config.manual_dirs = 'kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/old'
  config.data_dir = '/tfds'
  plan = DataPlan.from_config(config)
  merged = plan.with_manual_dirs({'cvc_clinicdb': '/data/CVC=1', 'cvc_300': '/data/CVC-300'})
  assert merged.manual_dirs == (('kvasir_seg', '/data/Kvasir-SEG'), ('cvc_clinicdb', '/data/CVC=1'),
                                ('cvc_300', '/data/CVC-300'))
  assert merged.manual_dir('cvc_clinicdb') == '/data/CVC=1' and merged.manual_dir('etis_larib') == ''
  assert merged.data_dir == '/tfds'
  assert plan.manual_dir('cvc_clinicdb') == '/old' and config.manual_dirs == (
      'kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/old')


def test_format_table_lines_up_one_row_per_split():
  result = {'dataset': 'kvasir_seg', 'split': 'test', 'num_images': 100,
            'dice': 0.91234, 'iou': 0.8, 'mean_dice': 0.9, 'mean_iou': 0.85,
            'mdice': 0.88, 'miou': 0.82, 'precision': 0.93, 'recall': 0.9}
  header, row = tables.format_table([result]).splitlines()
  assert header.split() == ['dataset/split', 'num_images', 'dice', 'iou',
                            'mean_dice', 'mean_iou', 'mdice', 'miou',
                            'precision', 'recall']
  assert row.split() == ['kvasir_seg/test', '100', '0.9123', '0.8000',
                         '0.9000', '0.8500', '0.8800', '0.8200', '0.9300',
                         '0.9000']
  assert len(header) == len(row)


def test_format_paper_table_in_the_layout_of_the_published_tables():
  results = [
      {'dataset': 'kvasir_seg', 'split': 'test', 'mdice': 0.8984,
       'miou': 0.8496, 'weighted_fmeasure': 0.8844, 'smeasure': 0.9152,
       'max_emeasure': 0.9479, 'mae': 0.0304},
      {'dataset': 'cvc_clinicdb', 'split': 'pranet_test', 'mdice': 1.0,
       'miou': 0.0004, 'weighted_fmeasure': 0.0, 'smeasure': 0.9995,
       'max_emeasure': 0.9, 'mae': 0.0049}]
  assert tables.format_paper_table('ours', results).splitlines() == [
      '        kvasir_seg/test                                       '
      'cvc_clinicdb/pranet_test',
      'method    mDice     mIoU    F^w_β      S_α  E^max_ξ      MAE    mDice'
      '     mIoU    F^w_β      S_α  E^max_ξ      MAE',
      'ours       .898     .850     .884     .915     .948     .030    1.000'
      '     .000     .000    1.000     .900     .005']
  assert tables.format_paper_table('ours', results, markdown=True) == (
      '| Method | kvasir_seg/test mDice | mIoU | F<sup>w</sup><sub>β</sub> |'
      ' S<sub>α</sub> | E<sup>max</sup><sub>ξ</sub> | MAE |'
      ' cvc_clinicdb/pranet_test mDice | mIoU | F<sup>w</sup><sub>β</sub> |'
      ' S<sub>α</sub> | E<sup>max</sup><sub>ξ</sub> | MAE |\n'
      '| --- |' + ' ---: |' * 12 + '\n'
      '| ours | .898 | .850 | .884 | .915 | .948 | .030 | 1.000 | .000 | .000 |'
      ' 1.000 | .900 | .005 |')
  # A dataset name wider than its six columns (71 characters) widens them
  # all to 11 = ceil((71 - 5 separators of 2) / 6); the next group starts
  # after 6 + 2 + 6 * 11 + 5 * 2 + 2 = 86 characters.
  long_name = dict(results[0], split='x' * 60)
  names, header, row = tables.format_paper_table(
      'ours', [long_name, results[1]]).splitlines()
  assert names.index('cvc_clinicdb') == 86
  assert header[86:97] == '      mDice' and row[86:97] == '      1.000'
  assert len(header) == len(row) == 6 + 12 * (2 + 11)


# --- visualize ---------------------------------------------------------------


def test_overlay_tints_the_inside_and_outlines_the_edge():
  image = np.full((5, 5, 3), 100, np.uint8)
  mask = np.zeros((5, 5), bool)
  mask[1:4, 1:4] = True
  result = visualize.overlay(image, mask, (255, 0, 0))
  np.testing.assert_array_equal(result[2, 2], [162, 60, 60])  # 0.6 x + 0.4 c.
  np.testing.assert_array_equal(result[1, 1], [255, 0, 0])  # Outline.
  np.testing.assert_array_equal(result[0, 0], [100, 100, 100])
  assert result.dtype == np.uint8


def test_overlay_of_random_blobs_by_formula():
  """Inside: 0.6 x + 0.4 c rounded; the outline (mask pixels with a background 8-neighbour or on the
  picture's edge): c; outside: the image."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (30, 41, 3), np.uint8)
  mask = ndimage.binary_opening(rng.random((30, 41)) < 0.6)
  color = (255, 0, 255)
  outline = mask & ~ndimage.binary_erosion(mask, np.ones((3, 3)), border_value=0)
  expected = np.where(mask[..., None], np.round(0.6 * image + 0.4 * np.array(color)), image)
  expected[outline] = color
  assert outline.any() and (mask & ~outline).any() and mask[0].any()
  np.testing.assert_array_equal(visualize.overlay(image, mask, color), expected)


def test_error_overlay_colours_hits_misses_and_false_alarms():
  image = np.zeros((1, 3, 3), np.uint8)
  truth = np.array([[True, True, False]])
  prediction = np.array([[True, False, True]])
  result = visualize.error_overlay(image, truth, prediction)
  np.testing.assert_array_equal(result[0], [visualize.TRUE_POSITIVE_COLOR,
                                            visualize.FALSE_NEGATIVE_COLOR,
                                            visualize.FALSE_POSITIVE_COLOR])


def test_side_by_side_shows_image_truth_and_prediction():
  image = np.full((2, 3, 3), 7, np.uint8)
  truth = np.array([[True, False, False], [False, False, False]])
  prediction = np.ones((2, 3), bool)
  result = visualize.side_by_side(image, truth, prediction)
  assert result.shape == (2, 3 + 4 + 3 + 4 + 3, 3)
  np.testing.assert_array_equal(result[:, :3], image)
  np.testing.assert_array_equal(result[:, 7:10, 0], truth * 255)
  np.testing.assert_array_equal(result[:, 14:], 255)


def test_comparison_grid_stacks_rows_of_any_width():
  images = [np.full((4, 6, 3), 50, np.uint8), np.full((2, 4, 3), 80, np.uint8),
            np.zeros((4, 4, 3), np.uint8)]
  truths = [np.ones((4, 6, 1), bool), np.zeros((2, 4), bool),
            np.zeros((4, 4), bool)]
  predictions = [np.zeros((4, 6), bool), np.ones((2, 4, 1), bool),
                 np.zeros((4, 4), bool)]
  grid = visualize.comparison_grid(images, truths, predictions, max_images=2)
  # Rows: image | 4-pixel separator | truth overlay | separator | prediction
  # overlay; a 4-pixel separator between rows; narrower rows padded black.
  assert grid.shape == (4 + 4 + 2, 3 * 6 + 2 * 4, 3)
  np.testing.assert_array_equal(grid[:4, :6], images[0])
  np.testing.assert_array_equal(grid[:4, 6:10], 128)
  np.testing.assert_array_equal(grid[:4, 10:16], visualize.overlay(
      images[0], truths[0][..., 0], visualize.GROUND_TRUTH_COLOR))
  np.testing.assert_array_equal(grid[:4, 20:26], images[0])
  np.testing.assert_array_equal(grid[4:8], 128)
  np.testing.assert_array_equal(grid[8:, :4], images[1])
  np.testing.assert_array_equal(grid[8:, 8:12], images[1])
  # A 2-pixel-high mask is all outline: pure prediction colour.
  np.testing.assert_array_equal(
      grid[8:, 16:20], np.broadcast_to(visualize.PREDICTION_COLOR, (2, 4, 3)))
  np.testing.assert_array_equal(grid[8:, 20:], 0)


# --- On a trained run --------------------------------------------------------

from helpers.tiny_runs import REPO_DIR  # pylint: disable=g-bad-import-order
from helpers.tiny_runs import TRAINED_STEPS as TRAIN_STEPS


@pytest.mark.slow
def test_evaluate_scores_every_test_image_at_original_size(trained_workdir):
  # No datasets given: the config's test_data, synthetic_polyps:test.
  (result,) = runner.run(trained_workdir, [], save_images=True)
  with open(os.path.join(trained_workdir, 'eval',
                         'synthetic_polyps-test.json')) as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(result))
  assert (written['dataset'], written['split']) == ('synthetic_polyps', 'test')
  assert written['checkpoint_step'] == TRAIN_STEPS
  assert written['num_images'] == len(written['images']) == 64
  assert written['model'] == 'resunetpp'
  for key in ('dice', 'iou', 'precision', 'recall', 'mean_dice', 'mean_iou',
              'mdice', 'miou', 'weighted_fmeasure', 'smeasure', 'max_emeasure',
              'mean_emeasure', 'mae'):
    assert 0.0 <= written[key] <= 1.0, key
  assert {(r['height'], r['width']) for r in written['images']} == {(128, 160)}
  recomputed = scoring.summarize(written['images'])
  assert {k: written[k] for k in recomputed} == pytest.approx(recomputed)

  # Record k is image k of the split, predicted at 32x32 and scored at 128x160.
  config = workdir_config.load_config(trained_workdir)
  examples = list(pipeline.iterate_originals(
      pipeline.examples(DataPlan.from_config(config), 'synthetic_polyps:test')))
  predictor = predictor_lib.Predictor.from_workdir(trained_workdir)
  probabilities = predictor.predict_proba([x['image'] for x in examples])
  for example, prob, record in itertools.islice(
      zip(examples, probabilities, written['images']), 3):
    assert record['name'] == example['name']
    expected = _record(prob, example['mask'])
    assert {k: record[k] for k in expected} == pytest.approx(expected)
  # The papers' numbers, streamed image by image, are those of the whole split.
  expected = scoring.evaluate_pairs(
      zip(probabilities, [x['mask'] for x in examples]))
  assert {k: written[k] for k in expected} == pytest.approx(expected)

  picture_dir = os.path.join(trained_workdir, 'eval', 'synthetic_polyps-test')
  name = examples[0]['name']
  side_by_side = np.asarray(Image.open(os.path.join(picture_dir,
                                                    f'{name}.png')))
  assert side_by_side.shape == (128, 3 * 160 + 2 * 4, 3)
  np.testing.assert_array_equal(side_by_side[:, :160], examples[0]['image'])
  np.testing.assert_array_equal(side_by_side[:, 164:324, 0],
                                examples[0]['mask'] * 255)
  overlay = np.asarray(Image.open(os.path.join(picture_dir,
                                               f'{name}_overlay.png')))
  assert overlay.shape == (128, 160, 3)
  assert len(os.listdir(picture_dir)) == 2 * 64


@pytest.mark.slow
def test_evaluate_command_line_prints_a_table(trained_workdir):
  completed = subprocess.run(
      [sys.executable, '-m', 'resunetpp_jax.evaluate',
       f'--workdir={trained_workdir}', '--checkpoint=latest',
       '--datasets=synthetic_polyps:valid', '--table=markdown', '--overwrite'],
      cwd=REPO_DIR, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr
  assert f'(step {TRAIN_STEPS})' in completed.stdout
  assert 'synthetic_polyps/valid' in completed.stdout
  with open(os.path.join(trained_workdir, 'eval',
                         'synthetic_polyps-valid.json')) as f:
    written = json.load(f)
  assert (written['checkpoint'], written['num_images']) == ('latest', 64)
  assert completed.stdout.endswith(
      tables.format_paper_table('resunetpp', [written], markdown=True) + '\n')


@pytest.mark.slow
def test_validation_scores_the_validation_data_the_run_trained_beside(trained_workdir, tmp_path):
  # The workdir's config validates on synthetic_polyps:valid: --validation scores exactly that split.
  (validation,) = runner.run(trained_workdir, [], validation=True, output_dir=str(tmp_path))
  (valid_split,) = runner.run(trained_workdir, [('synthetic_polyps', 'valid')], output_dir=str(tmp_path))
  assert (validation['dataset'], validation['split']) == ('validation', 'synthetic_polyps:valid')
  assert validation['images'] == valid_split['images'] and validation['mdice'] == valid_split['mdice']
  with open(tmp_path / 'validation.json') as f:
    assert json.load(f)['examples'] == 'synthetic_polyps:valid (64)'

  # A carve-out: the images held out of train_data by seed, none of those trained on.
  config = workdir_config.load_config(trained_workdir)
  config.update(train_data='synthetic_polyps:test', validation_data='', validation_fraction=0.25)
  (carved,) = runner.run(trained_workdir, [], config, validation=True, output_dir=str(tmp_path))
  names = {record['name'] for record in carved['images']}
  expected = {x['name'] for x in pipeline.iterate_originals(pipeline.validation_examples(DataPlan.from_config(config)))}
  trained_on = {x['name'] for x in pipeline.iterate_originals(pipeline.training_examples(DataPlan.from_config(config)))}
  assert carved['split'] == 'carve-out' and names == expected and len(names) == 16 and not names & trained_on


def test_validation_without_validation_data_or_with_datasets_is_refused(trained_workdir):
  config = workdir_config.load_config(trained_workdir)
  config.validation_data = ''
  with pytest.raises(errors.UserError, match=r"--validation: the config has no validation data"):
    runner.run(trained_workdir, [], config, validation=True)
  with pytest.raises(errors.UserError, match='give one of them'):
    runner.run(trained_workdir, [('synthetic_polyps', 'test')], validation=True)
