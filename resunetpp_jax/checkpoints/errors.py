"""The checkpoint faults a user can fix, each explained by its message."""
from resunetpp_jax import errors


class CheckpointNotFoundError(errors.UserError, FileNotFoundError):
  """The workdir has no trained run, or no checkpoint at the step asked for."""


class DiskFullError(errors.UserError):
  """The workdir's file system has no room for the next checkpoint."""


class CheckpointFolderGoneError(errors.UserError):
  """The workdir's checkpoint folder was moved or deleted while the run went on."""


class ConfigMismatchError(errors.UserError):
  """The config builds a network with other parameter shapes than the checkpoint's, or disagrees on the EMA."""


class UnreadableCheckpointError(errors.UserError):
  """The checkpoint asked for (or every one) cannot be read."""
