from hpcwizard.cli import main

raise SystemExit(main())
