"""``python -m gader`` is the ``gader`` command."""

from gader.cli import main

main()
