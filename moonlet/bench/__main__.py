"""``python -m moonlet.bench …``: the same options as ``moonlet bench``."""

from .cli import main

raise SystemExit(main())
