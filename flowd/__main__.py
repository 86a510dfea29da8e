import sys

from flowd.cli import main

sys.exit(main())
