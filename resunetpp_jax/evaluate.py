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
from absl import app
from absl import flags
from ml_collections import config_flags

from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.cli import config_files
from resunetpp_jax.cli import reporting
from resunetpp_jax.data import specs
from resunetpp_jax.evaluation import runner
from resunetpp_jax.evaluation import tables
from resunetpp_jax.inference import model_sources
from resunetpp_jax.runtime import compilation_cache


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
  flags.DEFINE_bool(
      'overwrite', False, 'Replace result JSON files that already exist in'
      ' --output_dir (without it, evaluate lists them and scores nothing).')
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
  checkpoint = model_sources.parse_checkpoint(args.checkpoint)
  config = args.config or (
      workdir_config.load_config(args.workdir) if args.workdir else None)
  if config is not None:
    compilation_cache.enable(config.compilation_cache_dir)
  results = runner.run(args.workdir, datasets, config, checkpoint=checkpoint,
                manual_dirs=manual_dirs, tta=args.tta,
                save_images=args.save_images, batch_size=args.batch_size,
                model=args.model, output_dir=args.output_dir,
                validation=args.validation, overwrite=args.overwrite)
  source = (f'Checkpoint {args.checkpoint} of {args.workdir}' if args.workdir
            else args.model or 'The shipped model')
  print(f'{source} (step {results[0]["checkpoint_step"]}), predictions at'
        f' original size{", TTA" if args.tta else ""}:')
  print(tables.format_table(results))
  print()
  print(tables.format_paper_table(results[0]['model'], results,
                           markdown=args.table == 'markdown'))


def run():
  define_flags()
  reporting.run(main, flags_parser=config_files.flags_parser)


if __name__ == '__main__':
  run()
