"""The command lines on bad input: one message naming the file or setting, no traceback, exit status 1.

Every case runs in one process (tests/helpers/cli_cases.py), as `python -m MODULE FLAGS` would run it.
"""
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
from PIL import Image
import pytest
import tifffile

from helpers.damage import write_tiff_declaring
from helpers.tiny_runs import REPO_DIR
from helpers.tiny_runs import TRAINED_STEPS
from resunetpp_jax.cli import reporting

BOMB_MESSAGE = ('bomb.tif declares a 60000x60000 image (3,600,000,000 pixels, 10.1 GiB as RGB), more than the limit of'
                ' 100,000,000 pixels, so it was not decoded. If the image is genuine, raise the limit with'
                ' --max_pixels=3600000000; otherwise remove the file.')


def _pairs(root, count=4):
  """`count` 20x24 image/mask PNG pairs in root/images and root/masks."""
  for folder in ('images', 'masks'):
    (root / folder).mkdir(parents=True)
  for index in range(count):
    Image.fromarray(np.full((20, 24, 3), 40 * index, np.uint8)).save(root / 'images' / f'{index}.png')
    mask = np.zeros((20, 24), np.uint8)
    mask[4:12, 5:15] = 255
    Image.fromarray(mask).save(root / 'masks' / f'{index}.png')
  return root


def _image(path, height, width):
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)).save(path)


@pytest.fixture(scope='module')
def runs(trained_workdir, synthetic_data_dir, session_cache_dir, tmp_path_factory):
  """Runs every case once: ({case: (exit status, stdout, stderr)}, the paths the tests look at)."""
  root = tmp_path_factory.mktemp('hostile')
  data_dir = root / 'tfds'
  cases = {}
  def add(case, module, *arguments):
    cases[case] = (f'resunetpp_jax.{module}', list(arguments))

  size = _pairs(root / 'size')
  Image.fromarray(np.zeros((30, 24), np.uint8)).save(size / 'masks' / '2.png')
  corrupt = _pairs(root / 'corrupt')
  (corrupt / 'images' / '1.png').write_bytes((corrupt / 'images' / '1.png').read_bytes()[:60])
  empty = _pairs(root / 'empty')
  for path in (empty / 'images').iterdir():
    path.unlink()
  bomb = _pairs(root / 'bomb')
  write_tiff_declaring(bomb / 'images' / 'bomb.tif', 60000, 60000)
  shutil.copy(bomb / 'masks' / '0.png', bomb / 'masks' / 'bomb.png')
  (bomb / 'images' / '3.png').write_bytes(b'not an image')
  for case, dataset, manual_dir in (('prepare_mask_size', 'folder_pairs', size),
                                    ('prepare_corrupt', 'folder_pairs', corrupt),
                                    ('prepare_empty_images', 'kvasir_seg', empty),
                                    ('prepare_missing_manual_dir', 'kvasir_seg', root / 'absent'),
                                    ('prepare_bomb', 'folder_pairs', bomb)):
    add(case, 'data.prepare', f'--dataset={dataset}', f'--manual_dir={manual_dir}', f'--data_dir={data_dir}')

  untrained = root / 'untrained'
  untrained.mkdir()
  shutil.copy(os.path.join(trained_workdir, 'config.json'), untrained)
  inputs = root / 'inputs'
  inputs.mkdir()
  _image(inputs / 'a.png', 40, 50)
  _image(inputs / 'a.jpg', 30, 20)
  tifffile.imwrite(inputs / 'c.tif', np.full((45, 35, 3), 99, np.uint8), photometric='rgb')
  (inputs / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a JPEG')
  write_tiff_declaring(inputs / 'bomb.tif', 60000, 60000)
  (inputs / 'notes.txt').write_text('not an image')
  (inputs / 'sub.png').mkdir()
  os.mkfifo(inputs / 'pipe.png')
  predict = ('predict', f'--input={inputs}', f'--output={root / "masks"}')
  fresh = ('predict', f'--input={inputs}', f'--output={root / "fresh"}')  # Refused outputs come before the model.
  add('predict_no_checkpoint', *predict, f'--workdir={untrained}')
  add('predict_unknown_step', *predict, f'--workdir={trained_workdir}', '--checkpoint=99')
  add('predict_unknown_step_verbose', *predict, f'--workdir={trained_workdir}', '--checkpoint=99', '--verbosity=1')
  add('predict_bad_files', *predict, f'--workdir={trained_workdir}', f'--checkpoint={TRAINED_STEPS}', '--tta')
  add('predict_into_the_input_folder', 'predict', f'--input={inputs}', f'--output={inputs}',
      f'--workdir={trained_workdir}')
  add('predict_missing_model_file', *fresh, f'--model={root / "missing.safetensors"}')
  add('predict_workdir_and_model', *fresh, f'--workdir={trained_workdir}', f'--model={root / "m.onnx"}')

  pranet = _pairs(root / 'pranet')
  add('predict_into_the_datasets_masks', 'predict', f'--input={pranet / "images"}', f'--output={pranet / "masks"}',
      f'--workdir={trained_workdir}', '--overwrite')
  add('predict_again_without_overwrite', *predict, f'--workdir={trained_workdir}')
  (root / 'a_file').write_text('not a folder')
  add('predict_output_is_a_file', 'predict', f'--input={inputs / "a.png"}', f'--output={root / "a_file"}',
      f'--workdir={trained_workdir}')
  add('predict_model_is_a_folder', *fresh, f'--model={root}')
  (root / 'random.safetensors').write_bytes(np.random.default_rng(0).integers(0, 256, 1000, np.uint8).tobytes())
  add('predict_model_random_bytes', *fresh, f'--model={root / "random.safetensors"}')
  (root / 'a_file.onnx').write_text('an older export')
  add('export_existing_output', 'export', f'--output={root / "a_file.onnx"}')
  add('pretrained_into_the_workdir', 'pretrained', f'--workdir={trained_workdir}',
      f'--output={trained_workdir}/config.json', '--overwrite')
  add('pretrained_missing_card', 'pretrained', f'--workdir={trained_workdir}', f'--output={root / "m.safetensors"}',
      f'--card={root / "missing_card.json"}')
  add('pretrained_existing_output', 'pretrained', f'--workdir={trained_workdir}', f'--output={root / "a_file"}')
  add('main_workdir_is_a_file', 'main', '--config=configs/synthetic.py', f'--workdir={root / "a_file"}',
      f'--config.data_dir={synthetic_data_dir}', f'--config.compilation_cache_dir={session_cache_dir}')
  add('evaluate_output_dir_is_a_file', 'evaluate', f'--workdir={trained_workdir}', '--datasets=synthetic_polyps:valid',
      f'--output_dir={root / "a_file"}')
  truncated = root / 'truncated'
  truncated.mkdir()
  (truncated / 'config.json').write_text('{"model": "resunetpp", "fil')
  add('evaluate_truncated_config', 'evaluate', f'--workdir={truncated}')

  add('evaluate_no_checkpoint', 'evaluate', f'--workdir={untrained}')
  add('evaluate_unknown_step', 'evaluate', f'--workdir={trained_workdir}', '--checkpoint=99')
  add('evaluate_bad_dataset_item', 'evaluate', f'--workdir={trained_workdir}', '--datasets=synthetic_polyps')
  add('evaluate_model_without_config', 'evaluate', f'--model={root / "missing.safetensors"}')
  add('evaluate_bad_pair', 'evaluate', f'--workdir={trained_workdir}', '--datasets=folder_pairs:all',
      f'--manual_dirs=folder_pairs={size}')

  add('main_batch_over_dataset', 'main', '--config=configs/synthetic.py', f'--workdir={root / "run"}',
      f'--config.data_dir={synthetic_data_dir}', f'--config.compilation_cache_dir={session_cache_dir}',
      '--config.batch_size=1024')

  cases_file = root / 'cases.json'
  cases_file.write_text(json.dumps(list(cases.values())))
  completed = subprocess.run([sys.executable, os.path.join('tests', 'helpers', 'cli_cases.py'), str(cases_file)], cwd=REPO_DIR,
                             capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  stdout, stderr = (re.split(r'^=== case \d+ exit (\d+)\n', stream, flags=re.M)
                    for stream in (completed.stdout, completed.stderr))
  assert len(stdout) == len(stderr) == 2 * len(cases) + 1, completed.stderr[-3000:]
  results = {case: (int(stdout[2 * index + 1]), stdout[2 * index], stderr[2 * index])
             for index, case in enumerate(cases)}
  return results, {'root': root, 'data_dir': data_dir, 'inputs': inputs}


def _error(runs_, name):
  """The stderr of case `name`, after checking that it failed without a traceback."""
  status, _, stderr = runs_[0][name]
  assert status == 1, (name, stderr[-2000:])
  assert 'Traceback' not in stderr, (name, stderr[-3000:])
  return stderr


def test_prepare_names_the_file_and_leaves_no_staging_folder(runs):
  assert 'masks/2.png is 24x30 but its image' in _error(runs, 'prepare_mask_size')
  assert 'corrupt/images/1.png: cannot decode' in _error(runs, 'prepare_corrupt')
  assert 'does not hold Kvasir-SEG in a known layout' in _error(runs, 'prepare_empty_images')
  assert "absent' is not a folder" in _error(runs, 'prepare_missing_manual_dir')
  downloads = runs[1]['data_dir'] / 'downloads'
  assert not list(downloads.glob('*staging*'))


def test_prepare_refuses_a_pixel_bomb_and_names_every_bad_pair(runs):
  stderr = _error(runs, 'prepare_bomb')
  assert 'Error: 2 of the 5 image/mask pairs cannot be used:\n' in stderr
  assert 'bomb/images/3.png: cannot decode' in stderr
  assert f'bomb/images/{BOMB_MESSAGE}' in stderr


def test_predict_without_checkpoint_or_with_an_unknown_step(runs, trained_workdir):
  assert 'No checkpoint in ' in _error(runs, 'predict_no_checkpoint')
  assert (f'Error: No checkpoint at step 99 in {trained_workdir}/checkpoints; the saved steps are [{TRAINED_STEPS}]:'
          ' pass one of them, best or latest to --checkpoint.') in _error(runs, 'predict_unknown_step')
  status, _, stderr = runs[0]['predict_unknown_step_verbose']
  assert status == 1
  assert 'Traceback' in stderr and 'CheckpointNotFoundError' in stderr


def test_predict_reports_bad_files_and_skipped_entries_and_segments_the_rest(runs):
  status, stdout, stderr = runs[0]['predict_bad_files']
  assert status == 1 and 'Traceback' not in stderr
  assert '3 of 5 images segmented' in stdout
  inputs = runs[1]['inputs']
  assert f'Entries of {inputs} that are not image files (skipped): 3 (notes.txt, pipe.png, sub.png/)' in stdout
  assert f'2 files could not be read:\n  {inputs}/bomb.tif declares' in stderr
  assert f'  {inputs}/{BOMB_MESSAGE}\n  {inputs}/broken.jpg: cannot decode' in stderr
  masks = runs[1]['root'] / 'masks'
  assert sorted(os.listdir(masks)) == ['a.jpg.png', 'a.png.png', 'c.png']
  assert np.asarray(Image.open(masks / 'c.png')).shape == (45, 35)
  assert 'is the input folder' in _error(runs, 'predict_into_the_input_folder')


def test_predict_names_a_missing_model_file_and_refuses_two_models(runs):
  assert 'missing.safetensors does not exist.' in _error(runs, 'predict_missing_model_file')
  assert 'Give --workdir or --model, not both.' in _error(runs, 'predict_workdir_and_model')


def test_outputs_are_never_lost_and_bad_destinations_are_named(runs, trained_workdir):
  root = runs[1]['root']
  stderr = _error(runs, 'predict_into_the_datasets_masks')
  assert f"--output={root}/pranet/masks holds 4 image files named like the inputs that predict did not write" in stderr
  mask = np.asarray(Image.open(root / 'pranet' / 'masks' / '0.png'))
  assert mask[4:12, 5:15].all() and mask.sum() == 80 * 255  # The ground truth is intact.
  stderr = _error(runs, 'predict_again_without_overwrite')
  assert 'Error: 3 outputs already exist: ' in stderr and 'pass --overwrite to replace them' in stderr
  assert f'--output={root}/a_file is a file, not a folder' in _error(runs, 'predict_output_is_a_file')
  assert f'Model file {root} is a folder' in _error(runs, 'predict_model_is_a_folder')
  assert 'random.safetensors is not a safetensors model file' in _error(runs, 'predict_model_random_bytes')
  assert f'1 outputs already exist: {root}/a_file.onnx' in _error(runs, 'export_existing_output')
  assert (root / 'a_file.onnx').read_text() == 'an older export'
  assert 'is inside --workdir' in _error(runs, 'pretrained_into_the_workdir')
  with open(os.path.join(trained_workdir, 'config.json')) as f:
    assert json.load(f)['model'] == 'resunetpp'  # Not replaced by a model file.
  assert 'missing_card.json cannot be read as JSON' in _error(runs, 'pretrained_missing_card')
  assert f'1 outputs already exist: {root}/a_file' in _error(runs, 'pretrained_existing_output')
  assert f'--workdir={root}/a_file is a file, not a folder' in _error(runs, 'main_workdir_is_a_file')
  assert f'--output_dir={root}/a_file is a file, not a folder' in _error(runs, 'evaluate_output_dir_is_a_file')
  assert f'{root}/truncated/config.json is damaged or unreadable' in _error(runs, 'evaluate_truncated_config')
  assert (root / 'a_file').read_text() == 'not a folder'


def test_evaluate_on_bad_input(runs):
  assert 'No checkpoint in ' in _error(runs, 'evaluate_no_checkpoint')
  assert 'No checkpoint at step 99' in _error(runs, 'evaluate_unknown_step')
  assert "'synthetic_polyps': expected NAME:SPLIT" in _error(runs, 'evaluate_bad_dataset_item')
  assert 'masks/2.png is 24x30 but its image' in _error(runs, 'evaluate_bad_pair')
  assert 'Without --workdir, give --config' in _error(runs, 'evaluate_model_without_config')


def test_training_with_a_batch_larger_than_the_dataset(runs):
  assert ('config.batch_size=1024 exceeds the 512 training examples per epoch'
          in _error(runs, 'main_batch_over_dataset'))


def test_a_background_writer_on_a_full_disk_gets_one_line_and_other_thread_errors_keep_their_traceback(
    caplog, capsys, monkeypatch):
  monkeypatch.setattr(threading, 'excepthook', reporting._background_disk_full_in_one_line)  # pylint: disable=protected-access

  def fail(error):
    raise error
  for error in (OSError(errno.ENOSPC, 'No space left on device', '/w/events'), ValueError('a real bug')):
    thread = threading.Thread(target=fail, args=(error,), name='writer')
    thread.start()
    thread.join()
  stderr = capsys.readouterr().err
  assert [r.getMessage() for r in caplog.records if r.levelname == 'WARNING'] == [
      'The background writer writer stopped: the disk is full (/w/events).']
  assert stderr.count('Traceback') == 1 and 'ValueError: a real bug' in stderr and 'ENOSPC' not in stderr
