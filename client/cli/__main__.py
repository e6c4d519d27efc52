"""``python -m client.cli ...``: the ``tabletlog`` command without the installed script."""

import sys

from client.cli import main

sys.exit(main())
