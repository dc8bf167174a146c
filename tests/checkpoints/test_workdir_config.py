"""WORKDIR/config.json: written atomically, and a damaged one named."""
import errno
import os

import pytest

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import workdir_config


def test_a_full_disk_while_saving_keeps_the_old_config(tiny_config, tmp_path, monkeypatch):
  workdir_config.save_config(str(tmp_path), tiny_config)
  before = (tmp_path / 'config.json').read_text()
  tiny_config.learning_rate = 0.5

  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, 'fsync', full)
  with pytest.raises(errors.UserError, match=f'Cannot write --workdir={tmp_path}/config.json: the disk is full'):
    workdir_config.save_config(str(tmp_path), tiny_config)
  assert (tmp_path / 'config.json').read_text() == before
  assert sorted(os.listdir(tmp_path)) == ['config.json']


def test_a_truncated_config_is_named(tmp_path):
  (tmp_path / 'config.json').write_text('{"model": "resunetpp", "fil')
  with pytest.raises(errors.UserError, match=f'{tmp_path}/config.json is damaged or unreadable'):
    workdir_config.load_config(str(tmp_path))
