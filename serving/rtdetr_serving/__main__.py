"""``python -m rtdetr_serving`` is ``rtdetr-serve``."""

import sys

from rtdetr_serving.cli import main

sys.exit(main())
