"""``python -m aqueue``: the same as the ``aqueue`` command."""

from aqueue.cli.main import main

raise SystemExit(main())
