"""python -m e2ecompress.train --help"""

import sys

from e2ecompress.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
