"""`python -m tpushell`: the same as the `tpushell` console script."""
import sys

from .app import main

sys.exit(main())
