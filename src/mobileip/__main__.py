"""``python -m mobileip``: the same as the ``mobileip`` command."""

from mobileip.cli import main

raise SystemExit(main())
