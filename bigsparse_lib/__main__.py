import sys

from bigsparse_lib.cli import main

sys.exit(main())
