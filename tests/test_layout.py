"""The package's shape: layers without circles (import-linter), one `resunetpp` command, configs found by name, and a
wheel that works outside the repository."""
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from resunetpp_jax import __main__ as command
from resunetpp_jax import errors
from resunetpp_jax.cli import config_files

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _lint_imports(cwd: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run([str(BIN / 'lint-imports'), '--no-cache'], cwd=cwd, capture_output=True, text=True,
                        timeout=120, check=False)


def test_import_contracts_hold():
  completed = _lint_imports(REPO)
  assert completed.returncode == 0, completed.stdout + completed.stderr
  assert '0 broken' in completed.stdout


@pytest.mark.parametrize('module, line, reported', [
    # An upward import: data (a lower layer) reaching the training loop.
    ('data/specs.py', 'from resunetpp_jax.training import loop  # noqa', 'resunetpp_jax.data.specs -> resunetpp_jax.training.loop'),
    # A circle inside one layer's package.
    ('checkpoints/errors.py', 'from resunetpp_jax.checkpoints import checkpointer  # noqa', '.errors -> .checkpointer'),
])
def test_import_contracts_fail_on_an_upward_import_or_a_circle(tmp_path, module, line, reported):
  """The contracts are not vacuous: a copy of the package with one bad import breaks them."""
  shutil.copytree(REPO / 'resunetpp_jax', tmp_path / 'resunetpp_jax',
                  ignore=shutil.ignore_patterns('__pycache__', '*.safetensors'))
  shutil.copy(REPO / 'pyproject.toml', tmp_path / 'pyproject.toml')
  with open(tmp_path / 'resunetpp_jax' / module, 'a') as f:
    f.write(f'\n{line}\n')
  completed = _lint_imports(tmp_path)
  assert completed.returncode != 0
  assert 'BROKEN' in completed.stdout and reported in completed.stdout, completed.stdout


def test_the_package_top_holds_the_commands_and_shared_modules_only():
  top = sorted(path.stem for path in (REPO / 'resunetpp_jax').glob('*.py'))
  assert top == ['__init__', '__main__', 'errors', 'evaluate', 'export', 'main', 'predict', 'pretrained', 'summary',
                 'visualize']


def test_every_subcommand_names_a_module_with_a_run_function():
  import importlib  # pylint: disable=import-outside-toplevel
  for name, (module_name, _) in command.SUBCOMMANDS.items():
    spec = importlib.util.find_spec(module_name)
    assert spec is not None, name
    source = pathlib.Path(spec.origin).read_text()
    assert '\ndef run():' in source, module_name
    # `python -m MODULE` runs it too: the module's own guard, or a package's __main__.py.
    main = pathlib.Path(spec.origin).with_name('__main__.py') if spec.submodule_search_locations else None
    guard = (main.read_text() if main else source)
    assert "if __name__ == '__main__':\n  run()" in guard or "if __name__ == '__main__':\n  app.run()" in guard, name


def test_resunetpp_help_lists_the_subcommands_and_an_unknown_one_is_refused():
  shown = subprocess.run([str(BIN / 'resunetpp'), '--help'], capture_output=True, text=True, timeout=60, check=True)
  for name in ('train', 'predict', 'evaluate', 'export', 'prepare', 'summary', 'convert', 'app'):
    assert f'\n  {name} ' in shown.stdout
  refused = subprocess.run([str(BIN / 'resunetpp'), 'segment'], capture_output=True, text=True, timeout=60,
                           check=False)
  assert refused.returncode == 2
  assert "unknown subcommand 'segment'" in refused.stderr


def test_a_config_name_is_the_shipped_file_and_a_path_stays_a_path():
  shipped = config_files.available()
  assert sorted(shipped) == ['kvasir', 'polyp', 'synthetic']
  assert pathlib.Path(config_files.path_of('polyp')).read_text() == (REPO / 'configs' / 'polyp.py').read_text()
  assert config_files.path_of('polyp.py:extra') == shipped['polyp'] + ':extra'
  assert config_files.path_of('configs/kvasir.py') == 'configs/kvasir.py'
  assert config_files.resolve(['x', '--config', 'synthetic', '--config.seed=1']) == [
      'x', '--config', shipped['synthetic'], '--config.seed=1']
  with pytest.raises(errors.ConfigError, match=r"--config=polip: there is no file 'polip'.*kvasir, polyp, synthetic"):
    config_files.path_of('polip')


@pytest.mark.slow
def test_summary_by_config_name_through_the_console_command(tmp_path):
  """From a folder without configs/: the name finds the shipped config."""
  completed = subprocess.run([str(BIN / 'resunetpp'), 'summary', '--config=kvasir'], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr
  assert 'Trainable params: 10,759,430' in completed.stdout
  unknown = subprocess.run([str(BIN / 'resunetpp'), 'train', '--config=polip', f'--workdir={tmp_path}/w'],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert unknown.returncode == 1
  assert unknown.stderr.strip().splitlines()[-1].startswith('Error: --config=polip: there is no file')


@pytest.mark.slow
def test_a_wheel_installed_outside_the_repository_segments_images_and_trains_the_demo(
    tmp_path, synthetic_data_dir, session_cache_dir):
  """`python -m build` makes a wheel; a fresh venv holds it (not editable) and the development venv's dependencies
  (on PYTHONPATH, whose .pth files Python does not read, so the editable checkout stays out of sight)."""
  build = subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', f'--outdir={tmp_path}/dist',
                          str(REPO)], capture_output=True, text=True, timeout=600, check=False)
  assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
  wheel, = (tmp_path / 'dist').glob('resunetpp_jax-*.whl')
  names = zipfile.ZipFile(wheel).namelist()
  assert 'resunetpp_jax/configs/polyp.py' in names and 'resunetpp_jax/weights/polyp.safetensors' in names
  assert not any(name.startswith(('tests/', 'tools/', 'scripts/', 'configs/')) for name in names)

  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install', '--no-deps',
                  '--no-index', '--quiet', str(wheel)], check=True, timeout=300)
  site_packages = next(path for path in sys.path if path.endswith('site-packages'))
  env = {**os.environ, 'PYTHONPATH': site_packages, 'JAX_PLATFORMS': 'cpu'}
  outside = tmp_path / 'elsewhere'
  outside.mkdir()
  resunetpp = str(venv / 'bin' / 'resunetpp')

  where = subprocess.run([str(venv / 'bin' / 'python'), '-c', 'import resunetpp_jax; print(resunetpp_jax.__file__)'],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=120, check=True)
  assert where.stdout.startswith(str(venv))

  from resunetpp_jax.data import image_io  # pylint: disable=import-outside-toplevel
  from resunetpp_jax.data.synthetic_polyps import render  # pylint: disable=import-outside-toplevel
  image, _ = render.render(np.random.default_rng(0), 96, 128)
  (outside / 'frame.png').write_bytes(image_io.encode_png(image))
  predicted = subprocess.run([resunetpp, 'predict', '--input=frame.png', '--output=masks'], cwd=outside, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  mask = image_io.read_image(str(outside / 'masks' / 'frame.png'))
  assert mask.shape[:2] == (96, 128)

  trained = subprocess.run(
      [resunetpp, 'train', '--config=synthetic', '--workdir=workdir', f'--config.data_dir={synthetic_data_dir}',
       f'--config.compilation_cache_dir={session_cache_dir}', '--config.filters=8,16,32', '--config.image_size=32,32',
       '--config.batch_size=8', '--config.schedule=constant', '--config.num_train_steps=2',
       '--config.eval_every_steps=2', '--config.checkpoint_every_steps=2'],
      cwd=outside, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert (outside / 'workdir' / 'config.json').is_file()
  assert any((outside / 'workdir' / 'checkpoints').iterdir())
