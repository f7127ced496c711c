"""`python -m tvlib ...`: the command line."""

from tvlib.cli import main

raise SystemExit(main())
