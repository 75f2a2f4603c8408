"""Settings of one studio process, from command-line flags and ``STUDIO_*`` environment variables.

Every flag has an environment variable of the same name (``--max-pixels`` is ``STUDIO_MAX_PIXELS``), so a
Hugging Face Space or a container can be configured without touching the command line. Flags win over the
environment, and the environment wins over the defaults. The result is one frozen dataclass that the rest of
the studio reads and never changes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from studio.micro.location import MICRO_MODEL

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_STYLES = Path(__file__).resolve().parent.parent / "assets" / "styles.csv"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
SAVE_FORMATS = ("png", "jpeg", "webp")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A flag or environment variable has a value the studio cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    """Everything the studio is told at start-up. Limits carry their unit in the name."""

    model: str = DEFAULT_MODEL
    micro_fallback: bool = False
    """Start on the micro model when ``model`` can be neither found in the local cache nor downloaded: set when
    no --model was given, so a first run without a network still makes pictures."""
    inpaint_model: str | None = None
    model_config: str | None = None
    controlnet_model: str | None = None
    models_dir: Path = Path("models")
    lora_dir: Path | None = None  # None: <models_dir>/lora
    embeddings_dir: Path | None = None  # None: <models_dir>/embeddings
    styles: Path | None = DEFAULT_STYLES
    """A1111's styles.csv format; None: no styles."""
    device: str = "auto"
    dtype: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    outputs: Path | None = Path("outputs")
    save_format: str = "png"
    max_batch: int = 8
    max_pixels: int = 1024 * 1024
    max_steps: int = 150
    max_queue: int = 32
    max_cells: int = 16
    cache_gb: float = 4.0
    offline: bool = False
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    compile: bool = False
    listen: bool = False
    share: bool = False
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # never in logs
    allow_public: bool = False
    allowed_hosts: tuple[str, ...] = ()
    """Host names the server answers to beside the loopback names; empty: this machine's own names when exposed."""
    allow_pickle: bool = False
    max_upload_mb: int = 50
    max_upload_megapixels: int = 50
    preview_every: int = 5
    preview_mode: str = "approx"
    api: bool = True
    mcp: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise SettingsError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise SettingsError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in (
            "max_batch",
            "max_pixels",
            "max_steps",
            "max_queue",
            "max_cells",
            "max_upload_mb",
            "max_upload_megapixels",
        ):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise SettingsError(f"{flag} must be at least 1, got {getattr(self, name)}")
        if self.save_format not in SAVE_FORMATS:
            raise SettingsError(f"--save-format must be one of {', '.join(SAVE_FORMATS)}, got {self.save_format!r}")
        if self.preview_every < 0:
            raise SettingsError(f"--preview-every must be 0 (off) or more, got {self.preview_every}")
        if self.preview_mode not in ("approx", "vae"):
            raise SettingsError(f"--preview-mode must be approx or vae, got {self.preview_mode!r}")
        if not self.cache_gb >= 0:
            raise SettingsError(f"--cache-gb must be 0 or more, got {self.cache_gb}")
        if self.compile and self.cpu_offload:
            raise SettingsError(
                "--compile and --cpu-offload do not go together: offloading moves the weights on every call, which "
                "a compiled model cannot follow. Use --compile on a GPU the model fits on, or --cpu-offload alone."
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"--port must be between 1 and 65535, got {self.port}")

    @property
    def lora_folder(self) -> Path:
        """Where LoRAs are looked for: ``--lora-dir``, or ``lora/`` inside the models folder."""
        return self.lora_dir if self.lora_dir is not None else self.models_dir / "lora"

    @property
    def embeddings_folder(self) -> Path:
        """Where textual inversion embeddings are looked for: ``--embeddings-dir``, or ``embeddings/`` inside the
        models folder (A1111 keeps them in ``embeddings/``)."""
        return self.embeddings_dir if self.embeddings_dir is not None else self.models_dir / "embeddings"

    @property
    def save_outputs(self) -> bool:
        return self.outputs is not None

    @property
    def server_name(self) -> str:
        """The address to bind: every interface with ``--listen``, else ``--host`` (loopback by default)."""
        return "0.0.0.0" if self.listen else self.host

    @property
    def loopback_only(self) -> bool:
        """Whether only this machine can reach the studio (no --listen, no --share, a loopback --host)."""
        return not self.listen and not self.share and self.host in LOOPBACK_HOSTS

    def check_exposure(self, on_spaces: bool) -> None:
        """Refuse to open the studio to others without a password, unless told to (or on Hugging Face Spaces,
        where a public Space is the point and the Space's own settings decide who can see it)."""
        exposed = self.listen or self.share or self.host not in LOOPBACK_HOSTS
        if exposed and not self.auth and not self.allow_public and not on_spaces:
            how = "--share" if self.share else "--listen" if self.listen else f"--host {self.host}"
            raise SettingsError(
                f"{how} opens the studio to other machines, and no password is set. Add --auth user:password "
                "(or --auth-file FILE), or --allow-public if everyone who can reach it may use it."
            )

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse flags over environment variables over defaults. ``--help`` lists every flag."""
        environ = os.environ if environ is None else environ
        args = build_parser(environ).parse_args(argv)
        outputs = None if args.no_save else Path(args.outputs)
        auth = parse_auth(args.auth or "", "--auth")
        if args.auth_file:
            try:
                text = Path(args.auth_file).read_text()
            except OSError as error:
                raise SettingsError(f"--auth-file {args.auth_file}: cannot read it ({error.strerror})") from None
            auth += parse_auth(",".join(line.strip() for line in text.splitlines() if line.strip()), "--auth-file")
        return cls(
            model=getattr(args, "model", DEFAULT_MODEL),
            micro_fallback=not hasattr(args, "model"),
            inpaint_model=args.inpaint_model or None,
            model_config=args.model_config or None,
            controlnet_model=args.controlnet_model or None,
            models_dir=Path(args.models_dir),
            lora_dir=Path(args.lora_dir) if args.lora_dir else None,
            embeddings_dir=Path(args.embeddings_dir) if args.embeddings_dir else None,
            styles=Path(args.styles) if args.styles else None,
            device=args.device,
            dtype=args.dtype,
            host=args.host,
            port=args.port,
            outputs=outputs,
            save_format=args.save_format,
            max_batch=args.max_batch,
            max_pixels=args.max_pixels,
            max_steps=args.max_steps,
            max_queue=args.max_queue,
            max_cells=args.max_cells,
            cache_gb=args.cache_gb,
            offline=args.offline or _env_flag(environ, "HF_HUB_OFFLINE"),
            attention_slicing=args.attention_slicing,
            vae_slicing=args.vae_slicing,
            vae_tiling=args.vae_tiling,
            cpu_offload=args.cpu_offload,
            compile=args.compile,
            listen=args.listen,
            share=args.share,
            auth=auth,
            allow_public=args.allow_public,
            allowed_hosts=parse_hosts(args.allowed_hosts or ""),
            allow_pickle=args.allow_pickle,
            max_upload_mb=args.max_upload_mb,
            max_upload_megapixels=args.max_upload_megapixels,
            preview_every=args.preview_every,
            preview_mode=args.preview_mode,
            api=not args.no_api,
            mcp=args.mcp,
        )


def parse_auth(text: str, flag: str) -> tuple[tuple[str, str], ...]:
    """``user:password[,user:password]`` as pairs; each needs a user and a password."""
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise SettingsError(f"{flag} takes user:password pairs separated by commas; {user or item!r} has none")
        pairs.append((user, password))
    return tuple(pairs)


def parse_hosts(text: str) -> tuple[str, ...]:
    """``name[,name]`` as names: host names or addresses, ``*.example.com`` for its subdomains, ``*`` for any."""
    hosts = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if "/" in item or " " in item or (item.count("*") and item != "*" and not item.startswith("*.")):
            raise SettingsError(
                f"--allowed-hosts takes host names separated by commas (studio.example.com, 192.168.1.20, "
                f"*.example.com or *); {item!r} is not one"
            )
        hosts.append(item)
    return tuple(hosts)


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1/0, true/false, yes/no or on/off, got {environ[name]!r}")


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {value!r}") from None


def _env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The flags; each default comes from its ``STUDIO_*`` variable when that is set."""

    def env(name: str, default: str | None) -> str | None:
        return environ.get(f"STUDIO_{name}", default)

    def flag(name: str) -> bool:
        return _env_flag(environ, f"STUDIO_{name}")

    def number(name: str, default: int) -> int:
        return _env_int(environ, f"STUDIO_{name}", default)

    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Diffusion Studio: a web studio for diffusion image generation. "
        "Every flag can also be set as the environment variable STUDIO_<FLAG> "
        "(for example STUDIO_MAX_PIXELS=589824); flags win over the environment.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--model",
        # Unset stays absent (not the default's name), so the studio knows it may fall back to the micro model.
        default=env("MODEL", None) or argparse.SUPPRESS,
        help=f"base model: a Hugging Face Hub id, a local diffusers folder, a single-file .safetensors checkpoint, "
        f"or {MICRO_MODEL} (the built-in 64x64 micro model). Unset: {DEFAULT_MODEL}, or the micro model when that "
        "can be neither found in the local cache nor downloaded",
    )
    models.add_argument(
        "--model-config",
        default=env("MODEL_CONFIG", None),
        help="for a single-file checkpoint: a diffusers folder (or Hub id) of the same architecture to take the "
        "model configs and tokenizer from; unset, diffusers picks the matching Stable Diffusion repository "
        "(downloaded once, then from the cache)",
    )
    models.add_argument(
        "--inpaint-model",
        default=env("INPAINT_MODEL", None),
        help="a dedicated inpainting checkpoint (Hub id, folder or .safetensors); the base model when unset",
    )
    models.add_argument(
        "--controlnet-model",
        default=env("CONTROLNET_MODEL", None),
        help="the Canny ControlNet (Hub id, folder or .safetensors); unset: the model family's own, "
        "lllyasviel/control_v11p_sd15_canny (SD 1.x), thibaud/controlnet-sd21-canny-diffusers (SD 2.x), "
        "diffusers/controlnet-canny-sdxl-1.0 (SDXL), micro-controlnet (the micro model's)",
    )
    models.add_argument(
        "--models-dir",
        default=env("MODELS_DIR", "models"),
        help="folder the model picker lists: diffusers folders and single-file .safetensors checkpoints",
    )
    models.add_argument(
        "--lora-dir",
        default=env("LORA_DIR", None),
        help="folder of .safetensors LoRAs, used as <lora:file-name:weight> in prompts; unset: lora/ in --models-dir",
    )
    models.add_argument(
        "--embeddings-dir",
        default=env("EMBEDDINGS_DIR", None),
        help="folder of textual inversion embeddings, named in prompts by file name; "
        "unset: embeddings/ in --models-dir",
    )
    models.add_argument(
        "--styles",
        default=env("STYLES", str(DEFAULT_STYLES)),
        help="prompt styles, an A1111 styles.csv (name,prompt,negative_prompt); empty for none; "
        "default: the studio's own assets/styles.csv",
    )
    models.add_argument(
        "--cache-gb",
        type=float,
        default=_env_float(environ, "STUDIO_CACHE_GB", 4.0),
        help="memory for ControlNets and inpainting UNets kept loaded beside the base model; "
        "past it the least recently used one is unloaded",
    )
    models.add_argument(
        "--allow-pickle",
        action="store_true",
        default=flag("ALLOW_PICKLE"),
        help="also load pickle weights (.ckpt, .pt, .bin, .pth), which can run code when loaded: only trusted files",
    )
    models.add_argument(
        "--offline",
        action="store_true",
        default=flag("OFFLINE"),
        help="never contact the Hugging Face Hub; load only local folders and the local cache (HF_HUB_OFFLINE=1 too)",
    )
    hardware = parser.add_argument_group("hardware")
    hardware.add_argument("--device", choices=DEVICES, default=env("DEVICE", "auto"), help="where models run")
    hardware.add_argument(
        "--dtype",
        choices=DTYPES,
        default=env("DTYPE", "auto"),
        help="weight precision; auto is float16 on CUDA and MPS and float32 on the CPU",
    )
    hardware.add_argument(
        "--attention-slicing",
        action="store_true",
        default=flag("ATTENTION_SLICING"),
        help="compute attention in slices: less memory, a little slower",
    )
    hardware.add_argument(
        "--vae-slicing", action="store_true", default=flag("VAE_SLICING"), help="decode a batch one image at a time"
    )
    hardware.add_argument(
        "--vae-tiling", action="store_true", default=flag("VAE_TILING"), help="decode large images in tiles"
    )
    hardware.add_argument(
        "--cpu-offload",
        action="store_true",
        default=flag("CPU_OFFLOAD"),
        help="keep models in CPU memory and move each to the GPU only while it runs (for 4-6 GB GPUs)",
    )
    hardware.add_argument(
        "--compile",
        action="store_true",
        default=flag("COMPILE"),
        help="torch.compile the UNet and VAE decoder and fuse the attention projections: faster steps, after about "
        "a minute of compiling at load and at the first use of each new size or batch",
    )
    server = parser.add_argument_group("server")
    # On Hugging Face Spaces the container's proxy reaches the app on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT
    # (0.0.0.0:7860), which the Space sets; loopback there would serve nobody.
    on_spaces = bool(environ.get("SPACE_ID"))
    default_host = environ.get("GRADIO_SERVER_NAME", "0.0.0.0") if on_spaces else "127.0.0.1"
    default_port = _env_int(environ, "GRADIO_SERVER_PORT", 7860) if on_spaces else 7860
    server.add_argument(
        "--host",
        default=env("HOST", default_host),
        help="address to listen on (loopback: only this machine; on Hugging Face Spaces, the Space's own)",
    )
    server.add_argument(
        "--listen", action="store_true", default=flag("LISTEN"), help="listen on all interfaces (needs --auth)"
    )
    server.add_argument(
        "--share", action="store_true", default=flag("SHARE"), help="create a public Gradio share link (needs --auth)"
    )
    server.add_argument("--auth", default=env("AUTH", None), help="user:password[,user:password] for every route")
    server.add_argument("--auth-file", default=env("AUTH_FILE", None), help="a file of user:password lines")
    server.add_argument(
        "--allow-public",
        action="store_true",
        default=flag("ALLOW_PUBLIC"),
        help="allow --listen/--share without a password (anyone who reaches it may use it)",
    )
    server.add_argument(
        "--allowed-hosts",
        default=env("ALLOWED_HOSTS", None),
        help="host names the server answers to, separated by commas (*.example.com: its subdomains; *: any); other "
        "Host headers get 400, against DNS rebinding. Loopback names, the share link's host and, on Hugging Face "
        "Spaces, the Space's own host are always allowed. Unset: with --listen, --share or --host, this machine's "
        "own names and addresses",
    )
    server.add_argument(
        "--max-upload-mb",
        type=int,
        default=number("MAX_UPLOAD_MB", 50),
        help="largest upload or request body, inline base64 images included",
    )
    server.add_argument(
        "--max-upload-megapixels",
        type=int,
        default=number("MAX_UPLOAD_MEGAPIXELS", 50),
        help="largest uploaded image, checked from its header before it is decoded",
    )
    server.add_argument("--port", type=int, default=number("PORT", default_port), help="port to listen on")
    server.add_argument(
        "--max-queue", type=int, default=number("MAX_QUEUE", 32), help="jobs that may wait for the GPU at once"
    )
    server.add_argument(
        "--no-api",
        action="store_true",
        default=flag("NO_API"),
        help="do not serve the AUTOMATIC1111-compatible REST API (/sdapi/v1, /controlnet, /docs)",
    )
    server.add_argument(
        "--mcp",
        action="store_true",
        default=flag("MCP"),
        help="also serve Gradio's MCP server at /gradio_api/mcp/ so assistants can generate images "
        "(needs the extra: pip install -r requirements-mcp.txt)",
    )
    previews = parser.add_argument_group("previews")
    previews.add_argument(
        "--preview-every",
        type=int,
        default=number("PREVIEW_EVERY", 5),
        help="show a live preview every N denoising steps (0: off)",
    )
    previews.add_argument(
        "--preview-mode",
        choices=("approx", "vae"),
        default=env("PREVIEW_MODE", "approx"),
        help="approx: latents mixed into RGB (nearly free); vae: the full decode (exact, slower)",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--outputs", default=env("OUTPUTS", "outputs"), help="folder where images are saved")
    outputs.add_argument(
        "--no-save", action="store_true", default=flag("NO_SAVE"), help="keep nothing on disk (overrides --outputs)"
    )
    outputs.add_argument(
        "--save-format",
        choices=SAVE_FORMATS,
        default=(env("SAVE_FORMAT", "png") or "png").lower(),
        help="format of saved images and of the gallery downloads (each tab can change it): png keeps the "
        "parameters text and the lossless JSON record; jpeg and webp are smaller and keep the parameters text in "
        "EXIF, as A1111 does",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-batch", type=int, default=number("MAX_BATCH", 8), help="most images one request may ask for"
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=number("MAX_PIXELS", 1024 * 1024),
        help="most pixels (width x height) of one image",
    )
    limits.add_argument(
        "--max-steps", type=int, default=number("MAX_STEPS", 150), help="most denoising steps of one request"
    )
    limits.add_argument(
        "--max-cells", type=int, default=number("MAX_CELLS", 16), help="most images one comparison may make"
    )
    return parser
