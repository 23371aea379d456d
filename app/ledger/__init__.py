"""The ledger engine: pure rules and the two-step commit, free of HTTP and SQL."""
