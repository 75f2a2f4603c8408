import threading
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.outputs import OutputStore


def test_names_are_sequential_and_continue_after_restart(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    first = store.save(Image.new("RGB", (8, 8)), "txt2img", 42, PngInfo())
    second = store.save(Image.new("RGB", (8, 8)), "txt2img", 43, PngInfo())
    assert first is not None
    assert second is not None
    assert (first.name, second.name) == ("00000-42.png", "00001-43.png")
    assert first.parent.parent.name == "txt2img"
    restarted = OutputStore(tmp_path).save(Image.new("RGB", (8, 8)), "txt2img", 1, PngInfo())
    assert restarted is not None
    assert restarted.name == "00002-1.png"


def test_concurrent_saves_never_collide(tmp_path: Path) -> None:
    stores = [OutputStore(tmp_path), OutputStore(tmp_path)]  # two stores: as two processes would
    paths: list[Path | None] = []
    lock = threading.Lock()

    def save(store: OutputStore) -> None:
        for _ in range(10):
            path = store.save(Image.new("RGB", (8, 8)), "txt2img", 0, PngInfo())
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
    assert OutputStore(None).save(Image.new("RGB", (8, 8)), "txt2img", 0, PngInfo()) is None
    assert list(tmp_path.iterdir()) == []
