"""``gc`` without an engine: images go through the function it is given, never through Docker."""

from __future__ import annotations

import subprocess
import sys

from orchestrator.result import Status, VariantResult
from orchestrator.runs.gc import collect
from orchestrator.runs.store import Store

from tests.evolution.fakes import make_program


def three_variants(tmp_path) -> Store:
    """The seed (image shared with the loser), the best, and a loser with an image of its own."""
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    runs = {"seed": (["img:seed"], 9.0, "admitted"), "best": (["img:best"], 1.0, "admitted"),
            "lose": (["img:seed", "img:lose"], 5.0, "rejected")}
    for i, (vid, (tags, value, verdict)) in enumerate(runs.items()):
        record = store.add_variant(vid=vid, full_hash=vid, parent_id=None,
                                   files={"train.py": f"X = {i}\n"}, diff="", seed_diff="",
                                   call=None, seeds=[(s, "first") for s in range(len(tags))])
        for ev, tag in zip(record.evaluations, tags, strict=True):
            result = VariantResult(variant_id=vid, status=Status.OK, image=tag)
            store.finish_evaluation(ev, result, value)
        store.set_verdict(vid, verdict, value)
    return store


def test_gc_removes_only_the_images_no_spared_variant_uses_through_the_given_function(tmp_path):
    store = three_variants(tmp_path)
    asked: list[str] = []

    def remove(tag: str) -> bool:
        asked.append(tag)
        return True

    done = collect(store, make_program(tmp_path / "prog"), remove)
    assert done.variants == ["lose"] and done.images == ["img:lose"]
    assert asked == ["img:lose"], "an image the seed still uses was offered for removal"
    assert store.variant("lose").collected and not store.variant("lose").folder.exists()


def test_gc_counts_an_image_only_when_the_function_says_it_was_removed(tmp_path):
    store = three_variants(tmp_path)
    done = collect(store, make_program(tmp_path / "prog"), lambda tag: False)
    assert done.variants == ["lose"] and done.images == []


def test_the_run_readers_do_not_need_docker_to_import():
    blocked = ("import sys; sys.modules['docker'] = None; "
               "import orchestrator.runs.gc, orchestrator.runs.report, orchestrator.runs.summary")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
