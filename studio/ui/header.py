"""The header every tab shares: the model picker, the LoRA and embedding pickers, the model line, and the System
panel.

Switching, unloading and reading new embeddings run on the GPU queue (``GPU_QUEUE``), so they wait for the
generation in progress and no generation starts halfway through them. The LoRA picker writes A1111's
``<lora:name:weight>`` tag into the prompt of the open tab, the embedding picker the embedding's name into its
prompt or negative prompt; the service reads them from there, so typing them by hand does the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio import __version__
from studio.errors import StudioError
from studio.loras import insert_lora
from studio.micro.location import MICRO_MODEL
from studio.sources import display_name
from studio.startup import LOADING_MESSAGE, StartingStudio, loaded_studio
from studio.ui.errors import redact, user_errors
from studio.ui.jobs import GPU_QUEUE

if TYPE_CHECKING:  # hints only: the page is built before torch loads (studio/startup.py)
    from studio.composition import Studio

TABS_ID = "studio-tabs"
# The Add buttons read which tab is open from the page: the first selected tab button is the outer tab bar's.
_OPEN_TAB_JS = f"""(tab, ...values) => {{
    const open = document.querySelector('#{TABS_ID} [role="tab"][aria-selected="true"]');
    return [open ? open.dataset.tabId : tab, ...values];
}}"""
DEFAULT_LORA_WEIGHT = 0.8


@dataclass(frozen=True)
class Header:
    """The header's widgets."""

    picker: gr.Dropdown
    refresh: gr.Button
    status: gr.Markdown
    lora: gr.Dropdown
    lora_weight: gr.Slider
    add_lora: gr.Button
    embedding: gr.Dropdown
    add_embedding: gr.Button
    add_negative_embedding: gr.Button
    open_tab: gr.Textbox
    system: gr.Accordion
    memory: gr.Markdown
    refresh_memory: gr.Button
    unload: gr.Button
    loading: gr.Timer
    """Ticks while the studio's libraries load, to fill the lists and the model line once they have."""


def model_status(studio: Studio | StartingStudio) -> str:
    """The header's model line, and why when the studio chose the micro model because the default one could not
    be had (so a newcomer offline knows what they are looking at). While the libraries load it says so, and if
    they could not load, why."""
    ready = loaded_studio(studio)
    if ready is None:
        assert isinstance(studio, StartingStudio)
        if studio.loader.failure is not None:
            return f"⚠️ {redact(studio.loader.failure)}"
        return f"⏳ {LOADING_MESSAGE} The page works already; a generation started now waits for them."
    from studio.system import model_line  # torch: asked only once the studio has loaded

    line = model_line(ready.manager)
    serving_fallback = ready.model_note is not None and ready.manager.source == MICRO_MODEL
    return f"{line}\n\n⚠️ {ready.model_note}" if serving_fallback else line


def _insert_embedding(text: str, name: str) -> str:
    from studio.embeddings import insert_embedding  # torch: the embeddings list is empty until it has loaded

    return insert_embedding(text, name)


def build_header(studio: Studio) -> Header:
    """The header's widgets; call inside the Blocks, above the tabs."""
    ready = loaded_studio(studio)
    if ready is not None:
        options, value = ready.system.choices()
        loras, embeddings = ready.service.loras.names(), ready.system.embedding_names()
    else:  # the libraries still load: the lists are filled when they have (``wire_header``'s timer)
        assert isinstance(studio, StartingStudio)
        options, value, loras, embeddings = [(display_name(studio.source), studio.source)], studio.source, [], []
    with gr.Column(elem_id="studio-header"):
        gr.Markdown(f"# Diffusion Studio\nv{__version__} · diffusion image generation over 🤗 diffusers")
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(
                options,
                value=value,
                label="Model (from the models folder, or type a Hub id)",
                allow_custom_value=True,
                filterable=True,
                elem_id="model-picker",
                scale=4,
            )
            refresh = gr.Button("🔄", elem_id="model-refresh", scale=0, min_width=48)
            lora = gr.Dropdown(loras, value=None, label="LoRA", elem_id="lora-picker", scale=2)
            lora_weight = gr.Slider(
                -2, 2, value=DEFAULT_LORA_WEIGHT, step=0.05, label="LoRA weight", elem_id="lora-weight", scale=2
            )
            add_lora = gr.Button("Add to prompt", elem_id="lora-add", scale=0, min_width=120)
        with gr.Row(equal_height=True):
            embedding = gr.Dropdown(
                embeddings,
                value=None,
                label="Embedding (textual inversion; 🔄 reads new files)",
                elem_id="embedding-picker",
                scale=4,
            )
            add_embedding = gr.Button("Add to prompt", elem_id="embedding-add", scale=0, min_width=120)
            add_negative_embedding = gr.Button(
                "Add to negative prompt", elem_id="embedding-add-negative", scale=0, min_width=180
            )
        status = gr.Markdown(model_status(studio), elem_id="model-status")
        with gr.Accordion("System: memory and loaded models", open=False, elem_id="system") as system:
            memory = gr.Markdown(elem_id="memory-status")
            with gr.Row():
                refresh_memory = gr.Button("Refresh", elem_id="memory-refresh", scale=0, min_width=120)
                unload = gr.Button("Unload models", variant="stop", elem_id="unload-models", scale=0, min_width=160)
        open_tab = gr.Textbox("txt2img", visible=False, elem_id="lora-open-tab")
        loading = gr.Timer(1.0, active=ready is None)
    return Header(
        picker,
        refresh,
        status,
        lora,
        lora_weight,
        add_lora,
        embedding,
        add_embedding,
        add_negative_embedding,
        open_tab,
        system,
        memory,
        refresh_memory,
        unload,
        loading,
    )


def _wire_add_to_open_tab(
    button: gr.Button,
    open_tab: gr.Textbox,
    choices: Sequence[gr.components.Component],
    boxes: Mapping[str, gr.Textbox],
    insert: Callable[..., str],
    warnings: tuple[str, str],
) -> None:
    """``button`` writes what ``choices`` hold (a name first, and what else ``insert`` takes) into the open tab's box
    of ``boxes`` (by tab id), through ``insert(text, *chosen)``. ``warnings``: when nothing is chosen, and when the
    open tab has no such box."""
    tab_ids = list(boxes)

    def add(tab: str, *values: Any) -> tuple[Any, ...]:
        chosen, texts = values[: len(choices)], values[len(choices) :]
        skipped = [gr.skip() for _ in texts]
        if not chosen[0]:
            gr.Warning(warnings[0])
            return tuple(skipped)
        if tab not in boxes:
            gr.Warning(warnings[1])
            return tuple(skipped)
        index = tab_ids.index(tab)
        skipped[index] = insert(texts[index] or "", *chosen)
        return tuple(skipped)

    button.click(
        add,
        inputs=[open_tab, *choices, *boxes.values()],
        outputs=list(boxes.values()),
        js=_OPEN_TAB_JS,
        queue=False,
        api_visibility="private",
    )


def wire_header(
    demo: gr.Blocks,
    header: Header,
    studio: Studio,
    prompts: Mapping[str, gr.Textbox],
    negative_prompts: Mapping[str, gr.Textbox],
    events: Sequence[gr.events.Dependency],
) -> None:
    """Wire the header to the studio; ``prompts`` and ``negative_prompts`` are the tabs' prompt boxes by tab id,
    ``events`` the generation events after which the model line is refreshed (the first generation loads the
    model). Every page load reads the models and LoRA folders again; 🔄 also gives the loaded model new embedding
    files."""
    private: dict[str, Any] = {"api_visibility": "private"}
    on_gpu_queue: dict[str, Any] = {"concurrency_id": GPU_QUEUE, "concurrency_limit": 1, **private}

    def lists() -> tuple[Any, Any, Any, str]:
        ready = loaded_studio(studio)
        if ready is None:  # still loading, or it could not load: the line says which
            return gr.skip(), gr.skip(), gr.skip(), status()
        options, value = ready.system.choices()
        return (
            gr.Dropdown(choices=options, value=value),
            gr.Dropdown(choices=ready.service.loras.names()),
            gr.Dropdown(choices=ready.system.embedding_names()),
            status(),
        )

    def when_loaded() -> tuple[Any, ...]:
        """The timer's tick: nothing while the libraries load; then the lists and the line, and no more ticks."""
        if isinstance(studio, StartingStudio) and not studio.loader.done:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (*lists(), gr.Timer(active=False))

    @user_errors(outputs=4)
    def refresh_lists() -> tuple[Any, Any, Any, str]:
        studio.system.refresh_embeddings()
        return lists()

    def status() -> str:
        return model_status(studio)

    @user_errors(outputs=2)
    def switch_model(choice: str, progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:  # noqa: B008
        progress(0, desc=f"Loading {display_name(str(choice))}…")
        try:
            studio.system.switch(choice)
        except StudioError as error:
            message = redact(str(error))
            gr.Warning(message)
            options, value = studio.system.choices()
            kept = f"{display_name(studio.manager.source)} is still the model."
            return gr.Dropdown(choices=options, value=value), f"{status()}\n\n⚠️ {message} {kept}"
        options, value = studio.system.choices()
        return gr.Dropdown(choices=options, value=value), status()

    header.picker.input(
        switch_model,
        inputs=header.picker,
        outputs=[header.picker, header.status],
        show_progress_on=header.status,
        **on_gpu_queue,
    )
    listed = [header.picker, header.lora, header.embedding, header.status]
    header.refresh.click(refresh_lists, outputs=listed, **on_gpu_queue)
    demo.load(lists, outputs=listed, queue=False, **private)
    header.loading.tick(when_loaded, outputs=[*listed, header.loading], queue=False, show_progress="hidden", **private)

    lora_missing = "Choose a LoRA first (put .safetensors LoRAs in the LoRA folder and press 🔄)."
    no_tab = "Open a generation tab (Text to image, Image to image, Inpaint, ControlNet or Compare) first."
    _wire_add_to_open_tab(
        header.add_lora,
        header.open_tab,
        [header.lora, header.lora_weight],
        prompts,
        lambda text, name, weight: insert_lora(text, name, float(weight)),
        (lora_missing, no_tab),
    )
    embedding_missing = "Choose an embedding first (put its file in the embeddings folder and press 🔄)."
    for button, boxes, where in (
        (header.add_embedding, prompts, "prompt"),
        (header.add_negative_embedding, negative_prompts, "negative prompt"),
    ):
        no_box = f"Open a generation tab or Compare first: the embedding goes into its {where}."
        _wire_add_to_open_tab(
            button, header.open_tab, [header.embedding], boxes, _insert_embedding, (embedding_missing, no_box)
        )

    def memory() -> str:
        from studio.system import describe_memory  # torch: the studio has loaded once studio.system answers

        return describe_memory(studio.system.memory())

    @user_errors(outputs=2)
    def memory_and_status() -> tuple[str, str]:
        return memory(), status()

    @user_errors(outputs=2)
    def unload_models() -> tuple[str, str]:
        studio.system.unload()
        gr.Info("Models unloaded; the next generation loads the model again.")
        return memory(), status()

    for opened in (header.system.expand, header.refresh_memory.click):
        opened(memory_and_status, outputs=[header.memory, header.status], queue=False, **private)
    header.unload.click(unload_models, outputs=[header.memory, header.status], **on_gpu_queue)
    for event in events:
        event.then(status, outputs=header.status, queue=False, **private)
