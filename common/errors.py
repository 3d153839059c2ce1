"""The base of every error whose message is written for the user of a command or service."""


class VisearchError(Exception):
    """Raised with a message a user can act on; CLIs print it without a traceback and
    the gRPC servicer maps it to a status code."""
