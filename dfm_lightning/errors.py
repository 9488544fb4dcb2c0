"""The one exception type for mistakes a user can fix (bad config, missing file, corrupted shard)."""


class UserError(Exception):
    """Raised for problems the user can fix; the CLI prints it as one line, without a traceback."""
