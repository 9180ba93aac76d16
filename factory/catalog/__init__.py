"""The signed catalog: store (local, S3), history, derived state, lifecycle, trust, queries."""
