"""``python -m idenfy_stepup.cli``: the same as the ``idenfy-stepup`` command."""

import sys

from .commands import main

sys.exit(main())
