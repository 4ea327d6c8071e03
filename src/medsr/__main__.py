from medsr.cli import main

raise SystemExit(main())
