"""The `resunetpp` command: one entry point for every tool of the package (`python -m resunetpp_jax` too).

  resunetpp train --config=polyp --workdir=workdirs/polyp
  resunetpp predict --input=IMAGES --output=MASKS
  resunetpp SUBCOMMAND --help

Each subcommand is the module that `python -m resunetpp_jax.MODULE` runs, with the same flags; only the chosen
one is imported, so its flags alone are defined.
"""
import importlib
import sys

# Subcommand -> (module, what it does).
SUBCOMMANDS = {
    'train': ('resunetpp_jax.main', 'train or resume a model (--config, --workdir)'),
    'predict': ('resunetpp_jax.predict', 'segment images, folders or videos (the shipped model by default)'),
    'evaluate': ('resunetpp_jax.evaluate', "score a model on test sets at original size, the papers' table"),
    'export': ('resunetpp_jax.export', 'write a model as ONNX or StableHLO'),
    'prepare': ('resunetpp_jax.data.prepare', 'prepare a dataset from its download'),
    'summary': ('resunetpp_jax.summary', "print a network's layers and parameter counts (--config)"),
    'convert': ('resunetpp_jax.pretrained', "write a workdir's checkpoint as a model file (.safetensors)"),
    'app': ('resunetpp_jax.app', 'a local web app and HTTP API that segment images and videos (--port)'),
}


def usage() -> str:
  width = max(map(len, SUBCOMMANDS))
  rows = '\n'.join(f'  {name.ljust(width)}  {text}' for name, (_, text) in SUBCOMMANDS.items())
  return (f'usage: resunetpp SUBCOMMAND [--flag=value ...]\n\n{rows}\n\n'
          "'resunetpp SUBCOMMAND --help' lists its flags. --config takes a file or a shipped config's name: "
          'kvasir, polyp, synthetic.')


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ('-h', '--help', 'help'):
    print(usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  if argv[1] not in SUBCOMMANDS:
    print(f'resunetpp: unknown subcommand {argv[1]!r}.\n\n{usage()}', file=sys.stderr)
    sys.exit(2)
  module_name, _ = SUBCOMMANDS[argv[1]]
  sys.argv = [f'resunetpp {argv[1]}', *argv[2:]]
  importlib.import_module(module_name).run()


if __name__ == '__main__':
  main()
