"""notifier: appointment reminders and aftercare messages for medical practices."""

from importlib import metadata


def version() -> str:
    """The installed version (`notifier --version`, `notifier_build_info`)."""
    try:
        return metadata.version("notifier")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
