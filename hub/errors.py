"""Errors a user of the hub can act on: the CLI prints them as one line and exits non-zero."""


class HubError(RuntimeError):
    """A failure with a message meant for the user."""


class SettingError(HubError, ValueError):
    """A ``HUB_*`` setting holds a value the hub does not take (the message names it and the choices)."""


class GateFailed(HubError):
    """The publish gate found failing expectations; the current release stays in place."""
