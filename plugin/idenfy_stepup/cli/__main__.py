"""``python -m idenfy_stepup.cli``: the same as the ``idenfy-stepup`` command."""

import sys

from .main import main

sys.exit(main())
