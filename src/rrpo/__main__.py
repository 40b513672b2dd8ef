from rrpo.cli import main

raise SystemExit(main())
