"""Bottom layer: errors, logging, the one subprocess door, the one AWS API door, configuration, git state."""
