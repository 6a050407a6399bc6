"""`python -m workers --processes N`: the same as `dispatcher worker`."""

from dispatcher.ops.cli import main

main(["worker", *__import__("sys").argv[1:]])
