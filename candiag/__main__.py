"""``python -m candiag``: same as the ``candiag`` console script."""

from candiag.cli import main

raise SystemExit(main())
