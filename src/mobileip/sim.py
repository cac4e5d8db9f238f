"""``python -m mobileip.sim`` still works: the simulator moved to :mod:`mobileip.tools.sim`
(issue 12's layout), where the docs and its own ``--help`` name it."""

from mobileip.tools.sim import main

if __name__ == "__main__":
    raise SystemExit(main())
