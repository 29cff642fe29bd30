from bridge.oem_sim.cli import main

raise SystemExit(main())
