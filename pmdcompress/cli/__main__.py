"""``python -m pmdcompress.cli``: the ``pmd`` command."""

from . import main

main()
