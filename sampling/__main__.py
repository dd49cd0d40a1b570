"""``python -m sampling presample ...``: see :mod:`sampling.presample`."""

import sys

from sampling.presample import main

if __name__ == "__main__":
    sys.exit(main())
