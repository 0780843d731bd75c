import sys

from tallyio.cli import main

sys.exit(main())
