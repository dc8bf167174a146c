"""The workdir lock at the start of training: a full disk or a workdir that is a file get one message."""
import errno
import os

import pytest

from resunetpp_jax import errors
from resunetpp_jax.training import workdir_lock


def test_a_disk_with_no_space_left_is_named_at_the_lock(tmp_path, monkeypatch):
  def full(fd, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(workdir_lock.os, 'write', full)
  with pytest.raises(errors.UserError, match=f'Cannot write --workdir={tmp_path}/run: the disk is full'):
    with workdir_lock.hold(str(tmp_path / 'run')):
      pass


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  (tmp_path / 'run').write_text('a file')
  with pytest.raises(errors.UserError, match=f'--workdir={tmp_path}/run is a file, not a folder'):
    with workdir_lock.hold(str(tmp_path / 'run')):
      pass
  assert (tmp_path / 'run').read_text() == 'a file'
