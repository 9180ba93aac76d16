"""The registry target: images pushed to an OCI registry by digest, channels as tags, the signed
provenance and the SBOM attached, and ``verify-image`` for consumers that have only the registry
and a public key (docs/registry.md)."""
