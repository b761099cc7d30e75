"""The exception root of ``retrieval``."""


class RetrievalError(Exception):
    """Root of every error raised by the ``retrieval`` package."""


class ChatLogError(RetrievalError):
    """A chat-log source cannot be read at all (wrong kind of path, unreadable file)."""


class BundleError(RetrievalError):
    """A model bundle is missing, incomplete or inconsistent; it is refused."""
