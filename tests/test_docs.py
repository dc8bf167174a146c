"""The documentation: links resolve, the README keeps its limits, every config key is documented, the README's code runs.

Each ```bash block of README.md is one test: every command line in it is either run (shrunk to seconds where it
trains, on small images this test writes where it reads a folder) or listed in SKIPPED with the reason it cannot run
here. A command that is neither fails the test, so a new command in the README is run or explained.
"""
import ast
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from resunetpp_jax.config import defaults

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / 'README.md'
DOCS = REPO / 'docs'
RECORDS = DOCS / 'records'
PAGES = sorted([README, *DOCS.rglob('*.md')])
# Pages written for the current layout; the records keep the paths of the commits they describe.
CURRENT_PAGES = [page for page in PAGES if RECORDS not in page.parents]

README_MAX_LINES = 210
PREDICT_WITHIN_LINES = 60
TIMEOUT_S = 300


def _read(path: pathlib.Path) -> str:
  return path.read_text(encoding='utf-8')


def _without_code(text: str) -> str:
  """The prose of a page: fenced blocks and inline code removed (links there are examples, not links)."""
  text = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
  return re.sub(r'`[^`\n]*`', '', text)


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: its text without markup, lower case, punctuation dropped, spaces as hyphens."""
  text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
  text = re.sub(r'<[^>]+>', '', text).replace('`', '').lower()
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def _anchors(path: pathlib.Path) -> set[str]:
  text = re.sub(r'^```.*?^```', '', _read(path), flags=re.M | re.S)
  anchors, seen = set(), {}
  for heading in re.findall(r'^#{1,6} +(.+?) *#*$', text, flags=re.M):
    slug = _slug(heading)
    anchors.add(f'{slug}-{seen[slug]}' if slug in seen else slug)
    seen[slug] = seen.get(slug, 0) + 1
  return anchors


def _links(path: pathlib.Path) -> list[str]:
  return re.findall(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)', _without_code(_read(path)))


@pytest.mark.parametrize('page', PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves_to_a_file_and_heading(page):
  broken = []
  for target in _links(page):
    if re.match(r'[a-z][a-z0-9+.-]*:', target):  # https:, mailto:
      continue
    file_part, _, anchor = target.partition('#')
    linked = (page.parent / file_part).resolve() if file_part else page
    if not linked.exists():
      broken.append(f'{target}: no file {linked}')
    elif anchor and linked.suffix == '.md' and anchor not in _anchors(linked):
      broken.append(f'{target}: no heading #{anchor} in {linked.relative_to(REPO)}')
  assert not broken, f'{page.relative_to(REPO)} has broken links:\n' + '\n'.join(broken)


def test_the_docs_pages_are_all_linked_from_the_readme():
  linked = {(REPO / target.partition('#')[0]).resolve() for target in _links(README)}
  unlinked = [page.relative_to(REPO) for page in DOCS.glob('*.md') if page.resolve() not in linked]
  assert not unlinked, f'README.md does not link {unlinked}'


@pytest.mark.parametrize('page', CURRENT_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_the_repository_paths_the_docs_name_exist(page):
  """`resunetpp_jax/...`, `configs/...`, `scripts/...`, `tools/...`, `tests/...` in code spans: the current layout."""
  spans = re.findall(r'`([^`\n]+)`', _read(page)) + re.findall(r'^```.*?^```', _read(page), flags=re.M | re.S)
  paths = set()
  for span in spans:
    paths.update(re.findall(r'(?<![\w./])((?:resunetpp_jax|configs|scripts|tools|tests|docs)/[\w./-]*\w)', span))
  missing = sorted(path for path in paths if not (REPO / path).exists())
  for text in spans:  # `python -m scripts.benchmark`, `python -m tools.release.model_card`, `python -m resunetpp_jax.X`
    for module in re.findall(r'python3? -m ((?:resunetpp_jax|scripts|tools)(?:\.[a-z_]\w*)*)', text):
      path = REPO / module.replace('.', '/')
      if not (path.with_suffix('.py').exists() or (path / '__main__.py').exists()):
        missing.append(f'python -m {module}')
  assert not missing, f'{page.relative_to(REPO)} names paths or modules that do not exist: {missing}'


def test_the_readme_is_a_front_page():
  lines = _read(README).splitlines()
  assert len(lines) <= README_MAX_LINES, f'README.md has {len(lines)} lines; at most {README_MAX_LINES}'
  predict = next((number for number, line in enumerate(lines, 1) if 'resunetpp predict' in line), None)
  assert predict is not None and predict <= PREDICT_WITHIN_LINES, (
      f'the first `resunetpp predict` is on line {predict}; it must be within the first {PREDICT_WITHIN_LINES}')


def test_the_readme_names_no_commits_runs_sessions_or_dates_in_prose():
  problems = []
  for number, line in enumerate(_read(README).splitlines(), 1):
    for word in re.findall(r'\b[0-9a-f]{7,40}\b', line):
      if re.search(r'[a-f]', word) and re.search(r'[0-9]', word):
        problems.append(f'line {number}: commit-like {word!r}')
    for found in re.findall(r'\b(?:runs? \d+|session \d+|sessions? \d+)', line, flags=re.I):
      problems.append(f'line {number}: {found!r}')
    if re.search(r'\b20\d\d-\d\d-\d\d\b', line) and not line.startswith('|'):
      problems.append(f'line {number}: a date outside a table')
  assert not problems, 'README.md:\n' + '\n'.join(problems)


def _key_table(text: str) -> list[tuple[str, str]]:
  """(key, default cell) of each row of configuration.md's table of every key."""
  section = text.split('\n## Every key', 1)[1].split('\n## ', 1)[0]
  return re.findall(r'^\| `(\w+)` \| `([^`]*)` \|', section, flags=re.M)


def test_configuration_documents_exactly_every_key_with_its_default():
  config = defaults.get_default_config()
  rows = _key_table(_read(DOCS / 'configuration.md'))
  keys = [key for key, _ in rows]
  duplicates = sorted({key for key in keys if keys.count(key) > 1})
  assert not duplicates, f'keys documented twice: {duplicates}'
  assert set(keys) == set(config.keys()), (
      f'undocumented: {sorted(set(config.keys()) - set(keys))}; not keys: {sorted(set(keys) - set(config.keys()))}')
  wrong = [(key, cell, config[key]) for key, cell in rows if ast.literal_eval(cell) != config[key]]
  assert not wrong, f'(key, documented default, default): {wrong}'


def _config_overrides(command: str) -> list[str]:
  return re.findall(r'--config\.([a-z_][a-z0-9_]*)=', command)  # Not placeholders: --config.KEY=VALUE


def test_every_config_override_in_the_docs_is_a_key():
  keys = set(defaults.get_default_config().keys())
  unknown = []
  for page in CURRENT_PAGES:
    for key in _config_overrides(_read(page)):
      if key not in keys:
        unknown.append(f'{page.relative_to(REPO)}: --config.{key}')
  assert not unknown, '\n'.join(unknown)


COMMAND_MODULES = {'train': 'main.py', 'predict': 'predict.py', 'evaluate': 'evaluate.py', 'export': 'export.py',
                   'prepare': 'data/prepare.py', 'summary': 'summary.py', 'convert': 'pretrained.py',
                   'app': 'app/__init__.py'}
MODULE_COMMANDS = {'resunetpp_jax.' + module.removesuffix('/__init__.py').removesuffix('.py').replace('/', '.'): command
                   for command, module in COMMAND_MODULES.items()}
ABSL_FLAGS = {'help', 'helpfull', 'helpshort', 'verbosity', 'v', 'logtostderr', 'alsologtostderr'}


def _defined_flags(path: pathlib.Path) -> set[str]:
  return set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", _read(path)))


def test_every_flag_the_docs_give_a_command_is_one_it_defines():
  """`resunetpp SUB --flag` and `python -m resunetpp_jax.MODULE --flag` in code: SUB's own flags or the shared ones."""
  package = REPO / 'resunetpp_jax'
  own = {command: _defined_flags(package / module) for command, module in COMMAND_MODULES.items()}
  shared = ABSL_FLAGS.union(*(_defined_flags(path) for path in package.rglob('*.py')
                              if path.relative_to(package).as_posix() not in COMMAND_MODULES.values()))
  unknown = []
  for page in CURRENT_PAGES:
    text = re.sub(r'\\\n\s*', ' ', _read(page))
    spans = re.findall(r'^```.*?^```', text, flags=re.M | re.S) + re.findall(r'`([^`\n]+)`', text)
    for span in spans:
      for line in span.splitlines():
        for match in re.finditer(r'\bresunetpp (\w+)|python -m (resunetpp_jax[\w.]*)', line):
          command = match.group(1) or MODULE_COMMANDS.get(match.group(2))
          if command is None or command.isupper():  # A placeholder (SUB), or a module that is no command.
            continue
          if command not in own:
            unknown.append(f'{page.relative_to(REPO)}: no command {command!r}')
            continue
          rest = line[match.end():].split('&&')[0].split(' | ')[0]
          for flag in re.findall(r'(?<![\w-])--([a-z_]+)(?=[=\s]|$)', rest):
            if flag not in own[command] | shared:
              unknown.append(f'{page.relative_to(REPO)}: {command} --{flag}')
  assert not unknown, '\n'.join(unknown)


# --- The README's code blocks --------------------------------------------------------------------------------------

def _blocks(language: str) -> list[str]:
  return re.findall(rf'^```{language}\n(.*?)^```', _read(README), flags=re.M | re.S)


def _commands(block: str) -> list[str]:
  """The block's command lines, continuation lines joined, comments dropped."""
  joined = re.sub(r'\\\n\s*', ' ', block)
  commands = []
  for line in joined.splitlines():
    words = shlex.split(line, comments=True)
    if words:
      commands.append(shlex.join(words))
  return commands


def _block_id(block: str) -> str:
  first = _commands(block)[0].split()
  words = [word for word in first[:3] if not word.startswith('-')]
  return '-'.join(re.sub(r'\W+', '_', word) for word in words)


BASH_BLOCKS = _blocks('bash')
PYTHON_BLOCKS = _blocks('python')

# (pattern matched against a command, why this test does not run it)
SKIPPED = [
    (r'^python3 -m venv ', 'the install: this test runs inside the environment it makes; .ci/run runs it verbatim'),
    (r'^python -m pytest ', 'the whole test suite, this file included; .ci/run runs it verbatim'),
    (r'--config=(polyp|kvasir|configs/polyp\.py|configs/kvasir\.py)\b(?!.*folder_pairs)',
     'trains on or scores Kvasir-SEG and CVC-ClinicDB: needs their downloads (and a GPU for the recipe\'s minutes)'),
    (r'^resunetpp evaluate --workdir=workdirs/polyp\b',
     'scores a workdir trained by the benchmark command on downloaded test sets: needs the downloads and a GPU'),
]

TINY_TRAINING = ['--config.num_train_steps=2', '--config.batch_size=2', '--config.image_size=32,32',
                 '--config.filters=8,16,32', '--config.eval_every_steps=2', '--config.log_every_steps=1',
                 '--config.checkpoint_every_steps=2', '--config.num_workers=0', '--config.num_eval_images_logged=1']


def _program(words: list[str]) -> list[str]:
  """`resunetpp ...` through the console script beside this Python; `python -m ...` through this Python."""
  if words[0] == 'resunetpp':
    script = pathlib.Path(sys.executable).parent / 'resunetpp'
    command = [str(script)] if script.exists() else [sys.executable, '-m', 'resunetpp_jax']
    return command + words[1:]
  if words[0] in ('python', 'python3'):
    return [sys.executable, *words[1:]]
  raise AssertionError(f'not a command this test knows how to run: {shlex.join(words)}')


def _write_images(folder: pathlib.Path, count: int, size=(48, 64), masks: bool = False) -> list[pathlib.Path]:
  """Small polyp-like images (a reddish disc on a pink background), and their masks in a sibling folder."""
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True)
  paths = []
  for k in range(count):
    height, width = size
    y, x = np.mgrid[:height, :width]
    disc = (y - height * rng.uniform(.3, .7)) ** 2 + (x - width * rng.uniform(.3, .7)) ** 2 < (height / 4) ** 2
    image = np.where(disc[..., None], [150, 40, 40], [230, 150, 140]) + rng.integers(0, 20, (height, width, 3))
    path = folder / f'image_{k}.png'
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)
    if masks:
      (folder.parent / 'masks').mkdir(exist_ok=True)
      Image.fromarray(disc.astype(np.uint8) * 255).save(folder.parent / 'masks' / path.name)
    paths.append(path)
  return paths


def _subcommand(words: list[str]) -> str | None:
  """`train` for `resunetpp train ...` and `python -m resunetpp_jax.main ...`; likewise `predict`."""
  if words[0] == 'resunetpp':
    return words[1]
  if words[:2] == ['python', '-m']:
    return {'resunetpp_jax.main': 'train', 'resunetpp_jax.predict': 'predict'}.get(words[2])
  return None


def _skip_reason(command: str) -> str | None:
  return next((why for pattern, why in SKIPPED if re.search(pattern, command)), None)


def _runs_here(command: str) -> bool:
  words = shlex.split(command)
  return _subcommand(words) == 'train' or (_subcommand(words) == 'predict' and '--input=DIR' in words)


def _prepare(command: str, tmp_path: pathlib.Path, synthetic_data_dir, cache_dir):
  """The command as run here (shrunk, on files written here), and a check of what it wrote."""
  words = shlex.split(command)
  words = [word.replace('configs/', f'{REPO}/configs/', 1) if word.startswith('--config=configs/') else word
           for word in words]
  if _subcommand(words) == 'train':
    workdir = tmp_path / 'workdir'
    words = [f'--workdir={workdir}' if word.startswith('--workdir=') else word for word in words]
    tiny = list(TINY_TRAINING)
    data_dir = synthetic_data_dir
    if '--config.manual_dirs=folder_pairs=/path/to/mine' in words:  # Fine-tuning: the shipped network, tiny images.
      folder = tmp_path / 'mine'
      _write_images(folder / 'images', 10, masks=True)
      words = [f'--config.manual_dirs=folder_pairs={folder}' if word.startswith('--config.manual_dirs=') else word
               for word in words]
      tiny = [flag for flag in tiny if not flag.startswith('--config.filters=')]  # Must be the shipped model's.
      data_dir = tmp_path / 'tensorflow_datasets'
    words += tiny + [f'--config.data_dir={data_dir}', f'--config.compilation_cache_dir={cache_dir}']

    def check():
      assert (workdir / 'config.json').exists(), 'no config.json in the workdir'
      assert any((workdir / 'checkpoints').iterdir()), 'no checkpoint in the workdir'
    return words, check
  if _subcommand(words) == 'predict' and '--input=DIR' in words:
    inputs = _write_images(tmp_path / 'DIR', 2)
    words = [f'--input={tmp_path / "DIR"}' if word == '--input=DIR' else
             f'--output={tmp_path / "OUT"}' if word.startswith('--output=') else word for word in words]

    def check():
      for image in inputs:
        mask = Image.open(tmp_path / 'OUT' / f'{image.stem}.png')
        assert mask.size == Image.open(image).size, f'{mask.size} mask for a {Image.open(image).size} image'
    return words, check
  raise AssertionError(f'a README command that this test neither runs nor lists in SKIPPED: {command}')


@pytest.mark.slow
@pytest.mark.parametrize('block', BASH_BLOCKS, ids=[f'bash{n}-{_block_id(b)}' for n, b in enumerate(BASH_BLOCKS)])
def test_the_readme_bash_block_runs(block, tmp_path, synthetic_data_dir, session_cache_dir):
  ran = []
  for command in _commands(block):
    if _skip_reason(command):
      continue
    words, check = _prepare(command, tmp_path, synthetic_data_dir, session_cache_dir)
    result = subprocess.run(_program(words), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
                            check=False)
    assert result.returncode == 0, f'{command}\nexit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}'
    check()
    ran.append(command)
  if not ran:
    pytest.skip('every command of this block is in SKIPPED: ' + '; '.join(map(_skip_reason, _commands(block))))


@pytest.mark.slow
@pytest.mark.parametrize('block', PYTHON_BLOCKS, ids=[f'python{n}' for n in range(len(PYTHON_BLOCKS))])
def test_the_readme_python_block_runs(block, tmp_path):
  """The block as written, in a folder holding the `frame.jpg` it reads."""
  image, = _write_images(tmp_path / 'frames', 1)
  Image.open(image).convert('RGB').save(tmp_path / 'frame.jpg')
  check = ('\nassert mask.shape == image.shape[:2] and mask.dtype == bool, (mask.shape, mask.dtype)\n'
           if 'mask = ' in block else '')
  result = subprocess.run([sys.executable, '-c', block + check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def test_every_readme_command_is_run_or_skipped_with_a_reason():
  """Without running anything: each command of each bash block is one the block test runs, or one in SKIPPED."""
  unhandled = [command for block in BASH_BLOCKS for command in _commands(block)
               if not _skip_reason(command) and not _runs_here(command)]
  assert not unhandled, 'README commands neither run nor skipped:\n' + '\n'.join(unhandled)


def test_the_readme_keeps_the_quick_start_that_ci_runs():
  """.ci/run runs the README's install and test lines: they stay, verbatim, in one bash block with the demo."""
  quick_start = ["python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'",
                 'python -m resunetpp_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic',
                 'python -m pytest -q -n 2 --dist loadfile']
  assert any(block.splitlines() == quick_start for block in BASH_BLOCKS)
  ci = _read(REPO / '.ci' / 'run')
  assert quick_start[0] in ci and quick_start[2] in ci
