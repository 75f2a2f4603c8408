"""The studio's own exceptions. Each message is written for the person who will read it: what went wrong and
what to do about it. The web layer shows these messages as they are; anything else is a bug and is logged."""


class StudioError(Exception):
    """Base of every error whose message is safe and useful to show a user."""


class InvalidRequest(StudioError):
    """A request asks for something the studio will not do (a value out of range, an unknown sampler...)."""


class ModelLoadError(StudioError):
    """A model could not be loaded; the model that was serving before (if any) keeps serving."""


class Cancelled(StudioError):
    """The user pressed Stop; nothing was produced."""


class OutOfMemory(StudioError):
    """The device ran out of memory; the studio freed what it could, and a smaller request will work."""
