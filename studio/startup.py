"""Starting the studio: the page first, the heavy libraries behind it.

Importing torch, diffusers and transformers takes longer than importing Gradio and building the whole page, so
``python app.py`` serves the page first and builds the studio (``studio.composition.build_studio``, which brings
them in) in a background thread. What the page is built from is known before that: the settings, the model the
studio starts on (the micro-model fallback's Hub check, ``choose_model``) and what can be read from that model's
configs without loading it (its native side, its sampler defaults, its examples). Everything else (the model
manager, the service, the Stop registry, the System panel) is reached through ``StartingStudio``, which waits for
the load, calling ``on_wait`` first so that a Generate pressed meanwhile says what it waits for.

Nothing here imports torch, diffusers, transformers or Gradio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from studio.errors import StudioError
from studio.examples import Examples, examples_for
from studio.few_step import GenerationDefaults, defaults_for_source
from studio.hub import hub_model_unavailable
from studio.micro.location import MICRO_MODEL
from studio.settings import Settings, SettingsError
from studio.sources import is_micro_model, looks_local, native_side_hint
from studio.styles import StyleLibrary
from studio.waiting import WaitingRoom

if TYPE_CHECKING:
    from studio.cancellation import CancelRegistry
    from studio.composition import Studio
    from studio.model_manager import ModelManager
    from studio.service import StudioService
    from studio.system import SystemService

log = logging.getLogger(__name__)

DEFAULT_SIDE = 512
"""Where the size sliders start when the model's own resolution cannot be read before it loads (a Hub id)."""
LOADING_MESSAGE = "Loading the studio's libraries (torch, diffusers)…"
"""What the header, a Generate pressed during the load, and a REST client told to come back say."""


def choose_model(settings: Settings) -> tuple[str, str | None]:
    """The model to start on, and a note for the user when it is not the one the settings name.

    With no --model given, the default Hub model is used when it is in the local cache or can be downloaded;
    otherwise (no network, the Hub unreachable, or offline) the committed micro model, so a first run still makes
    pictures.
    """
    if not settings.micro_fallback or looks_local(settings.model):
        return settings.model, None
    reason = hub_model_unavailable(settings.model, settings.offline)
    if reason is None:
        return settings.model, None
    note = (
        f"No --model was given and {settings.model} {reason}, so the studio runs its built-in micro model: "
        '64x64 pictures of coloured shapes (e.g. "a red circle and a blue star on a white background"). '
        "Start it with --model to use another model."
    )
    log.warning("%s", note)  # the header says it too, once the page is open
    return MICRO_MODEL, note


class StartupFailed(StudioError):
    """The studio's libraries or parts could not be loaded; the message says what and how to fix it."""


def _explain(error: BaseException) -> str:
    if isinstance(error, StudioError | SettingsError):
        return f"The studio could not start: {error}"
    if isinstance(error, ImportError):
        return (
            f"The studio could not start: a library it needs did not import ({type(error).__name__}: {error}). "
            "Install the requirements again (pip install -r requirements.txt) and restart it."
        )
    return (
        f"The studio could not start ({type(error).__name__}: {error}); the server log has the details. "
        "Fix the cause and restart it."
    )


class StudioLoader:
    """Runs ``build`` (the studio's heavy part) once, in a background thread, and hands out its result.

    ``wait`` returns the studio, raises ``StartupFailed`` with a message for users when the build failed, and
    returns None when ``timeout`` passes first.
    """

    def __init__(self, build: Callable[[], Studio]) -> None:
        self._build = build
        self._done = threading.Event()
        self._studio: Studio | None = None
        self._failure: str | None = None
        self._error: BaseException | None = None
        self._claimed = False
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def start(self) -> None:
        """Start the build in a background thread (unless it has started already)."""
        if self._claim():
            threading.Thread(target=self._build_now, name="studio-startup", daemon=True).start()

    def run(self) -> None:
        """Build the studio here, in the calling thread, unless it has started already (then wait for it)."""
        if self._claim():
            self._build_now()
        else:
            self._done.wait()

    def _claim(self) -> bool:
        with self._lock:
            claimed, self._claimed = self._claimed, True
        return not claimed

    def _build_now(self) -> None:
        try:
            self._studio = self._build()
        # Whatever the build raises (a broken install, a bad setting) must reach users as a message, not leave
        # every request waiting on a thread that died: it is kept for them, and logged (in full when unexpected).
        except Exception as error:
            expected = isinstance(error, StudioError | SettingsError)
            log.error("the studio could not start: %s", error, exc_info=None if expected else error)
            self._error = error
            self._failure = _explain(error)
        finally:
            with self._lock:
                self._done.set()
                callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (with no arguments) when the build has ended, well or not: now if it has, else in the
        thread that built it. For waiters that must not hold a thread meanwhile (the server's event loop)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    @property
    def started(self) -> bool:
        return self._claimed

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        """What the build raised; None while it runs and after it succeeded."""
        return self._error

    @property
    def failure(self) -> str | None:
        """Why the build failed, for users; None while it runs and after it succeeded."""
        return self._failure

    def wait(self, timeout: float | None = None) -> Studio | None:
        if not self._done.wait(timeout):
            return None
        if self._studio is None:
            message = self._failure or "The studio could not start; the server log has the details."
            raise StartupFailed(message) from self._error
        return self._studio


class StartingStudio:
    """The studio as the web layers see it from the start: what the page is built from at once, the rest after
    the load (see the module's docstring). It has ``Studio``'s attributes, so the tabs take either."""

    def __init__(
        self,
        settings: Settings,
        loader: StudioLoader,
        source: str,
        model_note: str | None,
        styles: StyleLibrary,
        waiting: WaitingRoom,
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.waiting = waiting
        """The one count of waiting jobs (``--max-queue``), shared with the loaded studio."""
        self.loader = loader
        self.source = source
        """The model the studio starts on (``choose_model``'s choice)."""
        self.model_note = model_note
        self.styles = styles
        self.native_side: int = native_side_hint(source) or DEFAULT_SIDE
        self.generation_defaults: GenerationDefaults = defaults_for_source(source)
        self.examples: Examples = examples_for(is_micro_model(source))
        self.on_wait = on_wait
        """Called (in the waiting request's thread) before a request waits for the load: the UI reports progress."""

    @property
    def loaded(self) -> Studio | None:
        """The studio once it is loaded; None while it loads. Raises ``StartupFailed`` when it could not load."""
        return self.loader.wait(timeout=0)

    def studio(self) -> Studio:
        """The loaded studio, waiting for the load if it still runs (``on_wait`` first)."""
        studio = self.loaded
        if studio is None:
            if not self.loader.started:  # a bug: waiting here would wait forever (the page is built before the load)
                raise RuntimeError("the studio was asked for before its load started; start it first")
            self.on_wait()
            studio = self.loader.wait()
        assert studio is not None  # wait() without a timeout returns the studio or raises
        return studio

    @property
    def manager(self) -> ModelManager:
        return self.studio().manager

    @property
    def service(self) -> StudioService:
        return self.studio().service

    @property
    def cancels(self) -> CancelRegistry:
        return self.studio().cancels

    @property
    def system(self) -> SystemService:
        return self.studio().system


def loaded_studio(studio: Studio | StartingStudio) -> Studio | None:
    """``studio`` once its libraries have loaded (a built ``Studio`` always has); None while they load or when
    they could not load (``studio.loader.failure`` says why)."""
    if not isinstance(studio, StartingStudio):
        return studio
    try:
        return studio.loaded
    except StartupFailed:
        return None


def choose_in_background(settings: Settings) -> Future[tuple[str, str | None]]:
    """``choose_model`` in a thread of its own, started now: the Hub check (at most ``HUB_CHECK_TIMEOUT_S`` when
    the network hangs) runs while Gradio imports, instead of before it."""
    choice: Future[tuple[str, str | None]] = Future()

    def run() -> None:
        try:
            choice.set_result(choose_model(settings))
        except BaseException as error:  # handed to whoever asks for the choice
            choice.set_exception(error)

    threading.Thread(target=run, name="studio-hub-check", daemon=True).start()
    return choice


def prepare_studio(
    settings: Settings,
    choice: Future[tuple[str, str | None]] | None = None,
    on_wait: Callable[[], None] = lambda: None,
) -> StartingStudio:
    """The studio for ``settings`` as the page is built from it; ``studio.loader.start()`` starts the load.

    ``choice`` is the model to start on, from ``choose_in_background``; without it the Hub check runs here.
    """
    source, note = choice.result() if choice is not None else choose_model(settings)
    styles = StyleLibrary(settings.styles)
    waiting = WaitingRoom(settings.max_queue)  # Gradio's queue counts in it from the start, the REST API once loaded

    def build() -> Studio:
        from studio.composition import build_studio  # torch, diffusers and transformers come in here

        return build_studio(settings, choice=(source, note), styles=styles, waiting=waiting)

    return StartingStudio(settings, StudioLoader(build), source, note, styles, waiting, on_wait)
