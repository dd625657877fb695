"""The ``pmd`` command: one module per command group, registered here explicitly.

- :mod:`.app`: the ``pmd`` group and the one place that decides exit codes;
- :mod:`.store`: ``compress``, ``decompress``, ``info``;
- :mod:`.simulate`: ``simulate``, ``demo``;
- :mod:`.report`: ``denoise``, ``report``;
- :mod:`.demix`: ``demix``, ``evaluate``;
- :mod:`.batch`: ``batch``.

Command modules import only click at the top; the library is imported inside
each command, so ``pmd --help`` and ``pmd --version`` start in well under a second.
"""

from __future__ import annotations

from .app import EXIT_HELP, PMDGroup, exit_code, main
from .batch import batch_command
from .demix import demix_command, evaluate_command
from .report import denoise_command, report_command
from .simulate import demo, simulate
from .store import compress, decompress, info

for _command in (compress, decompress, info, simulate, demo, demix_command, evaluate_command, denoise_command,
                 report_command, batch_command):
    main.add_command(_command)

__all__ = ["EXIT_HELP", "PMDGroup", "exit_code", "main"]
