"""The feedback loop: plan, scan, rebuild, signals, drift, the catalog service."""
