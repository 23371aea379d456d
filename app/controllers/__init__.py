"""HTTP controllers: decode, call the ledger, encode."""
