import sys

from reffakd.cli import main

sys.exit(main())
