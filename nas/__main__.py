"""`python -m nas ...` is `logah-nas ...` (local workers are started this way)."""
import sys

from nas.cli import main

sys.exit(main())
