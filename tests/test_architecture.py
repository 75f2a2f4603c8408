"""The layering rule, checked: dependencies point down (ui -> service -> model_manager -> diffusers)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = {"gradio", "fastapi", "starlette", "uvicorn", "gradio_client"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def studio_modules() -> dict[str, set[str]]:
    return {str(path.relative_to(ROOT)): imports_of(path) for path in (ROOT / "studio").rglob("*.py")}


def test_only_the_web_layer_imports_web_frameworks() -> None:
    for name, imported in studio_modules().items():
        if name.startswith(("studio/ui/", "studio/api/")):
            continue
        assert not {i.split(".")[0] for i in imported} & WEB, f"{name} imports a web framework"


def test_pure_modules_import_no_torch() -> None:
    for pure in ("studio/metadata.py", "studio/images.py", "studio/outputs.py", "studio/validation.py"):
        path = ROOT / pure
        if path.exists():
            assert not {i.split(".")[0] for i in imports_of(path)} & {"torch", "diffusers"}, pure


def test_lower_layers_do_not_import_higher_ones() -> None:
    above = {
        "studio/model_manager.py": ("studio.service", "studio.ui", "studio.api", "studio.composition"),
        "studio/loading.py": ("studio.service", "studio.ui", "studio.model_manager"),
        "studio/service.py": ("studio.ui", "studio.api", "studio.composition"),
    }
    modules = studio_modules()
    for module, forbidden in above.items():
        for imported in modules[module]:
            assert not imported.startswith(forbidden), f"{module} imports {imported}"
    # The two web layers: the UI mounts the REST API, never the other way round (and the API needs no gradio).
    for module, imported in modules.items():
        if module.startswith("studio/api/"):
            assert not {i for i in imported if i.startswith("studio.ui") or i.split(".")[0] == "gradio"}, module


def test_the_architecture_check_sees_the_modules() -> None:
    modules = studio_modules()
    assert "gradio" in modules["studio/ui/txt2img.py"]
    assert "studio.model_manager" in modules["studio/service.py"]
    assert "fastapi" in modules["studio/api/routes.py"]
