"""Exceptions with messages that name the problem and the way out."""


class GradiendError(ValueError):
    """Bad input or state that the user can fix; the message says how."""


class AssetNotInstalledError(GradiendError):
    """An offline asset (model or text shipped in a registry package) is not installed."""


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""
