"""Summarize a `py-spy record -f raw` file: the top frames by self and by inclusive samples.

python scripts/perf/pyspy_top.py FILE [N]
"""

from __future__ import annotations

import collections
import sys


def main() -> int:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- {title}")
        for frame, n in counter.most_common(top):
            print(f"{n / total * 100:5.1f}% {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
