"""``selfprog gc``: free the disk a run holds, keeping its best variant and those asked for.

A collected variant loses its folder (source, logs, artifacts) and its thin image; its row, its
metrics and its diffs stay in the store, so the report and the lineage still show it.

Nothing here talks to Docker: the caller passes a function that removes one image, so this
module reads the store and the disk only, and is tested without an engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.program import Program
from orchestrator.runs.store import Store
from orchestrator.runs.summary import best_variant

RemoveImage = Callable[[str], bool]
"""Remove the image with this tag; True if it was removed, False if it was gone or in use."""


@dataclass
class Collected:
    variants: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def collect(store: Store, program: Program, remove_image: RemoveImage | None,
            keep: tuple[str, ...] = ()) -> Collected:
    """Remove the folders and images of variants that are neither the best, the seed nor kept.

    Args:
        remove_image: removes one image tag; None leaves every image (folders only).
        keep: variant ids, or prefixes of them, to spare.

    Raises:
        EngineError: ``remove_image`` says the engine refused to remove an image it has.
    """
    best = best_variant(store, program.manifest.metric.goal)
    variants = store.variants()
    spared = {variants[0].id} | ({best.id} if best else set())
    spared |= {v.id for v in variants for k in keep if v.id.startswith(k)}
    images_of = store.images_by_variant()
    in_use = set().union(*(images_of.get(v, set()) for v in spared))
    out = Collected()
    for v in variants:
        if v.id in spared or v.collected:
            continue
        if v.folder.exists():
            out.bytes_freed += sum(p.stat().st_size for p in v.folder.rglob("*") if p.is_file())
            shutil.rmtree(v.folder)
        for image in sorted(images_of.get(v.id, set()) - in_use):
            if remove_image is not None and remove_image(image):
                out.images.append(image)
        store.mark_collected(v.id)
        out.variants.append(v.id)
    return out
