"""The one way every command writes an output file: atomically, inside its folder, never through a link.

`write_bytes`, `write_text` and `write_with` write to a uniquely named temporary file in the destination's folder
(created with O_CREAT | O_EXCL, which never follows a link), then rename it to the final name. A failure (full
disk, read-only folder, an exception in the caller's writer) leaves nothing under the final name and any old file of
that name intact, and removes the temporary file. A destination that is a symbolic link is refused: following it
would write anywhere on disk. Two writers of one name never mix their bytes: the last rename wins, whole.

`overwrite=False` refuses to replace an existing file, atomically (a hard link of the temporary file, which fails
if the name exists); the commands check all their outputs up front with `refuse_existing` so that the refusal
names them before any work. `prepare_folder` creates an output folder and `unwritable` turns an OSError into one
message that says what to do (full disk, read-only, not a folder, no permission).
"""
import errno
import os
import tempfile
from typing import Callable
from typing import Iterable
from typing import Sequence

from resunetpp_jax import errors

# The names a refusal lists before '... and N more'.
LISTED = 5
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class OutputError(errors.UserError):
  """An output cannot be written where the user asked: the message says why and what to do."""


class OutputExistsError(OutputError):
  """Outputs would replace files already on disk, and the user did not pass --overwrite."""


class LinkError(OutputError):
  """An output's name is a symbolic link, which outputs never follow."""


def listed(names: Sequence[str]) -> str:
  """'a, b, c' for up to LISTED names, then 'and N more'."""
  names = list(names)
  text = ', '.join(names[:LISTED])
  if len(names) > LISTED:
    text += f' and {len(names) - LISTED} more'
  return text


def unwritable(path, error: OSError, setting: str = '--output') -> OutputError:
  """One message for an OSError met writing `path` (given by `setting`): what happened and what to do."""
  path = os.fspath(path)
  where = f'{setting}={path}' if setting else path
  code = getattr(error, 'errno', None)
  if code in _NO_SPACE:
    reason = 'the disk is full (or the quota is spent): free space or choose a folder on another disk'
  elif code == errno.EROFS:
    reason = 'the disk is read-only: choose a writable folder'
  elif code in (errno.EACCES, errno.EPERM):
    reason = 'permission denied: choose a folder you may write to'
  elif code == errno.ENOTDIR:
    reason = 'a part of the path is a file, not a folder: choose another path'
  elif code == errno.EISDIR:
    reason = 'it is a folder, where a file should go: remove it or choose another name'
  elif code == errno.ELOOP:
    reason = 'it is a symbolic link, which outputs never follow: remove it or choose another folder'
  else:
    reason = f'{error.strerror or error}: choose a writable folder'
  detail = f' ({error.filename})' if getattr(error, 'filename', None) and os.fspath(error.filename) != path else ''
  return OutputError(f'Cannot write {where}{detail}: {reason}.')


def prepare_folder(path, setting: str = '--output') -> str:
  """Creates the output folder `path` if missing; an OutputError if it is a file or cannot be written."""
  path = os.fspath(path)
  if os.path.lexists(path) and not os.path.isdir(path):
    raise OutputError(f'{setting}={path} is a file, not a folder: choose a folder (it is created if missing).')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise unwritable(path, error, setting) from error
  _check_writable(path, path, setting)
  return path


def check_folder(path, setting: str = '--output') -> None:
  """Before any work: an OutputError if the folder `path` is a file, or it (or, if missing, the folder it would be
  created in) cannot be written. Creates nothing."""
  path = os.fspath(path)
  if os.path.lexists(path) and not os.path.isdir(path):
    raise OutputError(f'{setting}={path} is a file, not a folder: choose a folder (it is created if missing).')
  existing = os.path.abspath(path)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise unwritable(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), existing), setting)
  _check_writable(existing, path, setting)


def _check_writable(folder: str, path: str, setting: str) -> None:
  """An OutputError if `folder` is on a read-only disk or not writable for this user."""
  if os.statvfs(folder).f_flag & os.ST_RDONLY:
    raise unwritable(path, OSError(errno.EROFS, os.strerror(errno.EROFS), folder), setting)
  if not os.access(folder, os.W_OK | os.X_OK):
    raise unwritable(path, OSError(errno.EACCES, os.strerror(errno.EACCES), folder), setting)


def refuse_link(path) -> None:
  """An OutputError if `path` is a symbolic link: writing through it would land anywhere on disk."""
  if os.path.islink(path):
    raise LinkError(f'{os.fspath(path)} is a symbolic link (to {os.readlink(path)}); outputs never follow links:'
                      ' remove it or choose another folder.')


def refuse_existing(paths: Iterable, *, overwrite: bool, setting: str = '--output',
                    flag: str = '--overwrite') -> None:
  """Checks the outputs before any work: links are refused always, existing files unless `overwrite`."""
  paths = [os.fspath(path) for path in paths]
  links = [path for path in paths if os.path.islink(path)]
  if links:
    raise LinkError(f'{len(links)} outputs in {setting} are symbolic links, which outputs never follow:'
                      f' {listed(links)}. Remove them or choose another folder.')
  folders = [path for path in paths if os.path.isdir(path)]
  if folders:
    raise OutputError(f'{len(folders)} outputs in {setting} are folders where files should go: {listed(folders)}.'
                      ' Remove them or choose another folder.')
  existing = [path for path in paths if os.path.lexists(path)]
  if existing and not overwrite:
    raise OutputExistsError(f'{len(existing)} outputs already exist: {listed(existing)}. Nothing was written; pass'
                            f' {flag} to replace them, or choose another {setting}.')


def refuse_collisions(outputs: dict[str, Sequence[str]]) -> None:
  """`outputs`: output path -> the inputs that would write it; an OutputError if any has two."""
  clashes = [f'{os.path.basename(path)} (from {" and ".join(sources)})' for path, sources in outputs.items()
             if len(sources) > 1]
  if clashes:
    raise OutputError(f'{len(clashes)} output names would be written twice, one replacing the other:'
                      f' {listed(clashes)}. Rename the inputs or segment them into separate folders.')


def temporary_path(path) -> tuple[int, str]:
  """An open descriptor and the name of a new, unique file next to `path`, keeping its extension (encoders such
  as cv2.VideoWriter choose the format by it)."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  base = os.path.basename(path)
  extension = os.path.splitext(base)[1]
  return tempfile.mkstemp(dir=folder, prefix=f'.{base}.', suffix=f'.partial{extension}')


def publish(temporary: str, path, *, overwrite: bool = True) -> None:
  """Renames the finished `temporary` to `path`; with overwrite=False, fails if `path` appeared meanwhile."""
  path = os.fspath(path)
  refuse_link(path)
  if overwrite:
    os.replace(temporary, path)
    return
  try:
    os.link(temporary, path)  # Fails with EEXIST if the name exists: no check-then-write race.
  except FileExistsError as error:
    raise OutputExistsError(f'{path} already exists (another run wrote it meanwhile?); pass --overwrite to'
                            ' replace it.') from error
  except OSError as error:
    if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
      raise
    if os.path.lexists(path):  # A filesystem without hard links: checked, then renamed.
      raise OutputExistsError(f'{path} already exists; pass --overwrite to replace it.') from error
    os.replace(temporary, path)
    return
  os.remove(temporary)


def write_with(path, write: Callable[[str], None], *, overwrite: bool = True, setting: str = '') -> None:
  """Calls write(temporary_path) (a library that opens the file by name), then renames the file to `path`.

  Raises:
    OutputError: `path` is a link, exists (overwrite=False) or cannot be written; the old file is intact.
  """
  path = os.fspath(path)
  refuse_link(path)
  if os.path.isdir(path):
    raise OutputError(f'Cannot write {path}: it is a folder, where a file should go; remove it or choose another'
                      ' name.')
  if not overwrite and os.path.lexists(path):
    raise OutputExistsError(f'{path} already exists; pass --overwrite to replace it.')
  try:
    handle, temporary = temporary_path(path)
  except OSError as error:
    raise unwritable(path, error, setting) from error
  os.close(handle)
  try:
    write(temporary)
    publish(temporary, path, overwrite=overwrite)
  except OSError as error:
    raise unwritable(path, error, setting) from error
  finally:
    if os.path.lexists(temporary):
      os.remove(temporary)


def write_bytes(path, data: bytes, *, overwrite: bool = True, setting: str = '') -> None:
  """Writes `data` to `path` atomically (module docstring)."""
  def write(temporary: str):
    # The descriptor of mkstemp is closed: reopen without following a link planted in the meantime.
    fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC | getattr(os, 'O_NOFOLLOW', 0))
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  write_with(path, write, overwrite=overwrite, setting=setting)


def write_text(path, text: str, *, overwrite: bool = True, setting: str = '') -> None:
  """Writes `text` (UTF-8) to `path` atomically (module docstring)."""
  write_bytes(path, text.encode('utf-8'), overwrite=overwrite, setting=setting)
