"""The one writer of outputs: atomic, inside its folder, never through a link, never replacing without leave."""
import errno
import os
import threading

import pytest

from resunetpp_jax import errors
from resunetpp_jax.runtime import outputs


def _leftovers(folder):
  return sorted(name for name in os.listdir(folder) if name.startswith('.'))


def test_a_link_planted_under_the_output_name_is_refused_and_its_target_kept(tmp_path):
  target = tmp_path / 'elsewhere' / 'precious.txt'
  target.parent.mkdir()
  target.write_text('keep me')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'a.png').symlink_to(target)
  with pytest.raises(outputs.LinkError, match=f'{out}/a.png is a symbolic link .*remove it'):
    outputs.write_bytes(out / 'a.png', b'mask', overwrite=True)
  assert target.read_text() == 'keep me'
  assert os.path.islink(out / 'a.png')
  assert not _leftovers(out)
  with pytest.raises(outputs.LinkError, match='1 outputs in --output are symbolic links'):
    outputs.refuse_existing([out / 'a.png', out / 'b.png'], overwrite=True)


def test_a_full_disk_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'model.onnx'
  path.write_bytes(b'old model')

  def half_then_full(temporary):
    with open(temporary, 'wb') as f:
      f.write(b'new mod')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), temporary)

  with pytest.raises(outputs.OutputError, match=f'Cannot write --output={path} .*the disk is full') as caught:
    outputs.write_with(path, half_then_full, setting='--output')
  assert isinstance(caught.value, errors.UserError)
  assert path.read_bytes() == b'old model'
  assert not _leftovers(tmp_path)


def test_write_bytes_on_a_full_disk_at_fsync_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'a.png'
  path.write_bytes(b'old')

  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, 'fsync', full)
  with pytest.raises(outputs.OutputError, match='the disk is full'):
    outputs.write_bytes(path, b'new' * 1000)
  assert path.read_bytes() == b'old'
  assert not _leftovers(tmp_path)


def test_concurrent_writers_of_one_name_never_mix_their_bytes(tmp_path):
  path = tmp_path / 'a.csv'
  contents = [bytes([65 + k]) * 200_000 for k in range(8)]
  threads = [threading.Thread(target=outputs.write_bytes, args=(path, data)) for data in contents]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert path.read_bytes() in contents
  assert not _leftovers(tmp_path)


def test_without_overwrite_an_existing_file_is_kept_and_the_refusal_lists_them(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text('{"old": 1}')
  with pytest.raises(outputs.OutputExistsError, match='already exists; pass --overwrite'):
    outputs.write_text(path, '{}', overwrite=False)
  assert path.read_text() == '{"old": 1}'
  names = [tmp_path / f'{k}.png' for k in range(7)]
  for name in names:
    name.write_bytes(b'x')
  with pytest.raises(outputs.OutputExistsError,
                     match=r'7 outputs already exist: .*0.png, .*4.png and 2 more\. Nothing was written; pass'
                           ' --overwrite'):
    outputs.refuse_existing(names, overwrite=False)
  outputs.refuse_existing(names, overwrite=True)
  outputs.write_text(path, '{}', overwrite=True)
  assert path.read_text() == '{}'


def test_a_folder_under_an_output_name_and_a_file_as_the_folder_are_named(tmp_path):
  (tmp_path / 'a.csv').mkdir()
  with pytest.raises(outputs.OutputError, match='are folders where files should go'):
    outputs.refuse_existing([tmp_path / 'a.csv'], overwrite=True)
  (tmp_path / 'file').write_text('x')
  with pytest.raises(outputs.OutputError, match=f'--output={tmp_path}/file is a file, not a folder'):
    outputs.check_folder(tmp_path / 'file')
  with pytest.raises(outputs.OutputError, match='is a file, not a folder'):
    outputs.prepare_folder(tmp_path / 'file')
  with pytest.raises(outputs.OutputError, match='is a file, not a folder'):
    outputs.check_folder(tmp_path / 'file' / 'below')


def test_a_read_only_disk_is_named_before_any_work(tmp_path, monkeypatch):
  real = os.statvfs

  class ReadOnly:
    def __init__(self, result):
      self.f_flag = result.f_flag | os.ST_RDONLY

  monkeypatch.setattr(os, 'statvfs', lambda path: ReadOnly(real(path)))
  with pytest.raises(outputs.OutputError, match=f'Cannot write --output={tmp_path}/new.*the disk is read-only'):
    outputs.check_folder(tmp_path / 'new' / 'masks')
