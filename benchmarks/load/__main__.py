"""`python -m benchmarks.load`: the multi-worker load test (see `benchmarks.load.run`)."""

from benchmarks.load.run import main

raise SystemExit(main())
