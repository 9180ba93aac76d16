"""The aws target: AMI bakes, distribution, gc, and the hooks that follow catalog changes."""
