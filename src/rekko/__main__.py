"""``python -m rekko``: the same as the ``rekko`` command."""

from rekko.cli import main

main()
