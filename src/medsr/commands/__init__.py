"""One module per subcommand; each defines ``register(subparsers)`` and keeps heavy imports inside ``run``."""
