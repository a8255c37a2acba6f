"""The one exception a user can act on, shared by every module (so that none imports the CLI's
config to raise it)."""


class UserError(Exception):
    """A problem the user can fix (arguments, data, weights, a diverging run): the command-line tools
    print the message without a traceback and exit with status 2."""
