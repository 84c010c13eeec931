import sys

from e2ecompress.cli import main

sys.exit(main())
