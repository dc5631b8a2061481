"""Database access: the warehouse connection (embedded or a server), frame I/O."""
