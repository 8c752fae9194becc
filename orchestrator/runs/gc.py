"""``selfprog gc``: free the disk a run holds, keeping its best variant and those asked for.

A collected variant loses its folder (source, logs, artifacts) and its thin image; its row, its
metrics and its diffs stay in the store, so the report and the lineage still show it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, ImageNotFound

from orchestrator.errors import EngineError
from orchestrator.program import Program
from orchestrator.runs.store import Store
from orchestrator.runs.summary import best_variant


@dataclass
class Collected:
    variants: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def collect(store: Store, program: Program, client: docker.DockerClient | None,
            keep: tuple[str, ...] = ()) -> Collected:
    """Remove the folders and images of variants that are neither the best, the seed nor kept.

    Raises:
        EngineError: the engine refused to remove an image it has.
    """
    best = best_variant(store, program.manifest.metric.goal)
    variants = store.variants()
    spared = {variants[0].id} | ({best.id} if best else set())
    spared |= {v.id for v in variants for k in keep if v.id.startswith(k)}
    images_of: dict[str, set[str]] = {}
    for ev in store.evaluations("done"):
        row = store.db.execute("SELECT result FROM evaluations WHERE id = ?", (ev.id,)).fetchone()
        image = json.loads(row[0]).get("image") if row and row[0] else None
        if image:
            images_of.setdefault(ev.variant_id, set()).add(image)
    in_use = set().union(*(images_of.get(v, set()) for v in spared))
    out = Collected()
    for v in variants:
        if v.id in spared or v.collected:
            continue
        if v.folder.exists():
            out.bytes_freed += sum(p.stat().st_size for p in v.folder.rglob("*") if p.is_file())
            shutil.rmtree(v.folder)
        for image in sorted(images_of.get(v.id, set()) - in_use):
            if client is not None and _remove_image(client, image):
                out.images.append(image)
        store.mark_collected(v.id)
        out.variants.append(v.id)
    return out


def _remove_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.remove(tag, noprune=False)
    except ImageNotFound:
        return False
    except APIError as exc:
        if exc.status_code == 409:  # a container of another run uses it: leave it
            return False
        raise EngineError(f"cannot remove image {tag}: {exc}") from None
    return True
