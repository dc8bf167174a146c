"""Runs command lines of the project's CLIs one after another in one Python process.

  python tests/cli_cases.py CASES_JSON

CASES_JSON is a list of [module, [arguments...]]. Each case runs the module as `python -m module arguments...`
would, through its `if __name__ == '__main__'` block (runpy), and prints what the interpreter would: the message
of a `sys.exit('...')`, the traceback of an uncaught exception. After each case the flags it defined are removed
and the others reset, and '=== case K exit STATUS' is printed on stdout and stderr. One process saves the seconds
of importing JAX and TFDS, and of compiling the model, per case.
"""
import json
import runpy
import sys
import traceback

from absl import flags

import resunetpp_jax.evaluation.literature_metrics  # noqa: F401  pylint: disable=unused-import
import resunetpp_jax.inference  # noqa: F401  pylint: disable=unused-import
import resunetpp_jax.training.loop  # noqa: F401  pylint: disable=unused-import
import resunetpp_jax.visualize  # noqa: F401  pylint: disable=unused-import

# What the CLIs import, loaded before the first case: flags that libraries define (image_io's --max_pixels,
# grain's) must outlive each case's cleanup. Not the CLI modules themselves, which runpy runs afresh.


def run_case(module: str, arguments: list[str]) -> int:
  """`python -m module arguments...` in this process; its exit status."""
  defined_before = set(flags.FLAGS)
  sys.argv = [module, *arguments]
  try:
    runpy.run_module(module, run_name='__main__', alter_sys=True)
    status = 0
  except SystemExit as stop:
    if isinstance(stop.code, str):
      print(stop.code, file=sys.stderr)
    status = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    status = 1
  for name in set(flags.FLAGS) - defined_before:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  return status


def main():
  with open(sys.argv[1]) as f:
    cases = json.load(f)
  for index, (module, arguments) in enumerate(cases):
    status = run_case(module, arguments)
    for stream in (sys.stdout, sys.stderr):
      print(f'=== case {index} exit {status}', file=stream, flush=True)


if __name__ == '__main__':
  main()
