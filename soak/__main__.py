"""``python -m soak``: run the soak harness (``SOAK_MINUTES``, default 30)."""

from __future__ import annotations

import sys

from soak.harness import main

sys.exit(main())
