"""The command line: one module per verb group, each registering its own subparsers."""
