from pathlib import Path

import pytest

from studio.devices import resolve_placement
from studio.settings import DEFAULT_MODEL, Settings, SettingsError, build_parser


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings.from_cli([], environ={})
    assert settings.model == DEFAULT_MODEL == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert settings.controlnet_model is None, "each model family's own canny ControlNet"
    assert settings.cache_gb == 4.0
    assert settings.host == "127.0.0.1"
    assert settings.port == 7860
    assert settings.outputs == Path("outputs")
    assert settings.save_outputs
    assert settings.device == "auto"
    assert settings.dtype == "auto"
    assert not settings.offline


def test_environment_sets_values_and_flags_win() -> None:
    environ = {"STUDIO_MODEL": "env/model", "STUDIO_MAX_STEPS": "40", "STUDIO_VAE_TILING": "1", "STUDIO_PORT": "9000"}
    from_env = Settings.from_cli([], environ=environ)
    assert (from_env.model, from_env.max_steps, from_env.vae_tiling, from_env.port) == ("env/model", 40, True, 9000)
    flagged = Settings.from_cli(["--model", "flag/model", "--max-steps", "12", "--port", "8000"], environ=environ)
    assert (flagged.model, flagged.max_steps, flagged.port) == ("flag/model", 12, 8000)


def test_no_save_keeps_nothing() -> None:
    assert Settings.from_cli(["--no-save"], environ={}).outputs is None
    assert Settings.from_cli([], environ={"STUDIO_NO_SAVE": "true"}).outputs is None
    assert Settings.from_cli(["--outputs", "/tmp/x"], environ={}).outputs == Path("/tmp/x")


def test_the_rest_api_is_on_by_default_and_mcp_off() -> None:
    defaults = Settings.from_cli([], environ={})
    assert defaults.api and not defaults.mcp
    assert not Settings.from_cli(["--no-api"], environ={}).api
    assert not Settings.from_cli([], environ={"STUDIO_NO_API": "1"}).api
    assert Settings.from_cli(["--mcp"], environ={}).mcp
    assert Settings.from_cli([], environ={"STUDIO_MCP": "yes"}).mcp


def test_mcp_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from studio.ui.mcp_tools import check_mcp_extra

    check_mcp_extra()  # installed in the test environment (requirements-dev.txt)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SettingsError, match=r"--mcp needs Gradio's MCP extra.*pip install -r requirements-mcp.txt"):
        check_mcp_extra()


def test_offline_from_flag_or_hf_hub_offline() -> None:
    assert Settings.from_cli(["--offline"], environ={}).offline
    assert Settings.from_cli([], environ={"HF_HUB_OFFLINE": "1"}).offline
    assert not Settings.from_cli([], environ={"HF_HUB_OFFLINE": "0"}).offline


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"STUDIO_MAX_BATCH": "many"}, "STUDIO_MAX_BATCH must be a whole number"),
        ({"STUDIO_OFFLINE": "perhaps"}, "STUDIO_OFFLINE must be 1/0"),
        ({"STUDIO_CACHE_GB": "lots"}, "STUDIO_CACHE_GB must be a number"),
    ],
)
def test_bad_environment_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_cli([], environ=environ)


def test_limits_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="--max-pixels must be at least 1"):
        Settings.from_cli(["--max-pixels", "0"], environ={})


def test_help_documents_every_flag() -> None:
    text = build_parser({}).format_help()
    for flag in (
        "--model",
        "--inpaint-model",
        "--controlnet-model",
        "--device",
        "--dtype",
        "--port",
        "--host",
        "--outputs",
        "--no-save",
        "--max-batch",
        "--max-pixels",
        "--max-steps",
        "--offline",
        "--max-queue",
        "--attention-slicing",
        "--vae-slicing",
        "--vae-tiling",
        "--cpu-offload",
        "--no-api",
        "--mcp",
        "--compile",
    ):
        assert flag in text
    assert "STUDIO_" in text
    assert "lllyasviel/control_v11p_sd15_canny" in text, "the family defaults are documented"


def test_compile_is_opt_in_from_flag_or_environment() -> None:
    assert not Settings.from_cli([], environ={}).compile
    assert Settings.from_cli(["--compile"], environ={}).compile
    assert Settings.from_cli([], environ={"STUDIO_COMPILE": "1"}).compile


def test_compile_refuses_cpu_offload_with_the_fix() -> None:
    with pytest.raises(SettingsError, match="--compile and --cpu-offload do not go together.*--cpu-offload alone"):
        Settings.from_cli(["--compile", "--cpu-offload"], environ={})


def test_cpu_placement_is_float32_and_refuses_float16() -> None:
    import torch

    placement = resolve_placement("cpu", "auto")
    assert placement.device.type == "cpu"
    assert placement.dtype == torch.float32
    assert resolve_placement("cpu", "bfloat16").dtype == torch.bfloat16
    with pytest.raises(SettingsError, match="float16 is not supported on the CPU"):
        resolve_placement("cpu", "float16")


def test_missing_cuda_is_a_clear_message() -> None:
    import torch

    if torch.cuda.is_available():
        assert resolve_placement("cuda", "auto").dtype == torch.float16
    else:
        with pytest.raises(SettingsError, match="PyTorch sees no CUDA GPU"):
            resolve_placement("cuda", "auto")


def test_save_format_from_flag_or_environment() -> None:
    assert Settings.from_cli([], environ={}).save_format == "png"
    assert Settings.from_cli(["--save-format", "webp"], environ={}).save_format == "webp"
    assert Settings.from_cli([], environ={"STUDIO_SAVE_FORMAT": "JPEG"}).save_format == "jpeg"
    with pytest.raises(SettingsError, match="--save-format must be one of png, jpeg, webp"):
        Settings.from_cli([], environ={"STUDIO_SAVE_FORMAT": "gif"})
    assert "--save-format" in build_parser({}).format_help()


def test_on_hugging_face_spaces_the_studio_listens_where_the_space_expects() -> None:
    spaces = Settings.from_cli([], environ={"SPACE_ID": "me/studio", "GRADIO_SERVER_NAME": "0.0.0.0"})
    assert (spaces.server_name, spaces.port, spaces.loopback_only) == ("0.0.0.0", 7860, False)
    spaces.check_exposure(on_spaces=True)  # public is the point of a Space: no password demanded
    chosen = Settings.from_cli(["--host", "127.0.0.1"], environ={"SPACE_ID": "me/studio"})
    assert chosen.server_name == "127.0.0.1", "a flag still wins"
    local = Settings.from_cli([], environ={"GRADIO_SERVER_NAME": "0.0.0.0"})
    assert (local.server_name, local.loopback_only) == ("127.0.0.1", True), "off Spaces nothing changes"


def test_models_and_lora_folders() -> None:
    defaults = Settings.from_cli([], environ={})
    assert defaults.models_dir == Path("models")
    assert defaults.lora_folder == Path("models") / "lora", "lora/ inside the models folder"
    moved = Settings.from_cli([], environ={"STUDIO_MODELS_DIR": "/data/models"})
    assert moved.lora_folder == Path("/data/models/lora")
    flagged = Settings.from_cli(["--lora-dir", "/data/loras"], environ={"STUDIO_MODELS_DIR": "/data/models"})
    assert (flagged.models_dir, flagged.lora_folder) == (Path("/data/models"), Path("/data/loras"))
    assert defaults.embeddings_folder == Path("models") / "embeddings", "as A1111 keeps them: embeddings/"
    elsewhere = Settings.from_cli([], environ={"STUDIO_EMBEDDINGS_DIR": "/data/ti"})
    assert elsewhere.embeddings_folder == Path("/data/ti")
    text = build_parser({}).format_help()
    assert "--models-dir" in text and "--lora-dir" in text and "--embeddings-dir" in text
