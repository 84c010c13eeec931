"""python -m e2ecompress.train --help"""

import sys

from e2ecompress._extras import MissingExtraError, require

if __name__ == "__main__":
    try:
        require("python -m e2ecompress.train", "ml", ("torch", "safetensors", "yaml", "sklearn", "tqdm"))
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from e2ecompress.train.cli import main

    sys.exit(main())
