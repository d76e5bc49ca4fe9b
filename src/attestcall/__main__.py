import sys

from attestcall.cli import main

sys.exit(main())
