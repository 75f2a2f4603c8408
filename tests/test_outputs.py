import threading
from pathlib import Path

from PIL import Image

from studio.metadata import read_metadata
from studio.outputs import OutputStore


def test_names_are_sequential_and_continue_after_restart(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    first = store.save(Image.new("RGB", (8, 8)), "txt2img", 42, "p", {})
    second = store.save(Image.new("RGB", (8, 8)), "txt2img", 43, "p", {})
    assert first is not None
    assert second is not None
    assert (first.name, second.name) == ("00000-42.png", "00001-43.png")
    assert first.parent.parent.name == "txt2img"
    restarted = OutputStore(tmp_path).save(Image.new("RGB", (8, 8)), "txt2img", 1, "p", {})
    assert restarted is not None
    assert restarted.name == "00002-1.png"


def test_concurrent_saves_never_collide(tmp_path: Path) -> None:
    stores = [OutputStore(tmp_path), OutputStore(tmp_path)]  # two stores: as two processes would
    paths: list[Path | None] = []
    lock = threading.Lock()

    def save(store: OutputStore) -> None:
        for _ in range(10):
            path = store.save(Image.new("RGB", (8, 8)), "txt2img", 0, "p", {})
            with lock:
                paths.append(path)

    threads = [threading.Thread(target=save, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = [p.name for p in paths if p is not None]
    assert len(names) == 40
    assert len(set(names)) == 40


def test_no_save_writes_nothing(tmp_path: Path) -> None:
    assert OutputStore(None).save(Image.new("RGB", (8, 8)), "txt2img", 0, "p", {}) is None
    assert list(tmp_path.iterdir()) == []


def test_saves_in_the_chosen_format_with_the_parameters(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, "webp")  # --save-format webp
    default = store.save(
        Image.new("RGB", (8, 8)), "txt2img", 5, "a cat\nSteps: 2, Sampler: Euler, Seed: 5", {"seed": 5}
    )
    jpeg = store.save(
        Image.new("RGBA", (8, 8)), "txt2img", 6, "a dog\nSteps: 3, Sampler: Euler, Seed: 6", {"seed": 6}, "jpeg"
    )
    png = store.save(
        Image.new("RGB", (8, 8)), "txt2img", 7, "a cow\nSteps: 4, Sampler: Euler, Seed: 7", {"seed": 7}, "png"
    )
    assert default is not None and jpeg is not None and png is not None
    assert (default.name, jpeg.name, png.name) == ("00000-5.webp", "00001-6.jpg", "00002-7.png")
    for path, image_format, text in ((default, "WEBP", "a cat"), (jpeg, "JPEG", "a dog"), (png, "PNG", "a cow")):
        with Image.open(path) as image:
            assert image.format == image_format
            meta = read_metadata(image)
        assert meta.parameters is not None and meta.parameters.prompt == text
    with Image.open(png) as image:
        assert read_metadata(image).record == {"seed": 7}
