"""The shared rule of the non-LM backends: where each proposal starts, and its random stream."""

from __future__ import annotations

from orchestrator.generators.base import GenerationRequest, Parent, starts


def _firsts(request: GenerationRequest, salt: str = "") -> list[tuple[int, str, float]]:
    return [(i, p.variant_id, rng.random()) for i, p, rng in starts(request, {"a.py": "x"}, salt)]


def test_proposals_take_parents_in_turn_and_their_streams_ignore_how_many_are_drawn(single):
    parents = (Parent("p", {"a.py": "1"}), Parent("q", {"a.py": "2"}))
    three = _firsts(GenerationRequest(single, parents, n=3, seed=5))
    five = _firsts(GenerationRequest(single, parents, n=5, seed=5))
    assert [p for _, p, _ in five] == ["p", "q", "p", "q", "p"]
    assert five[:3] == three
    assert len({r for _, _, r in five}) == 5
    assert _firsts(GenerationRequest(single, parents, n=3, seed=6)) != three
    assert _firsts(GenerationRequest(single, parents, n=3, seed=5), salt="self:") != three


def test_a_request_with_no_parent_starts_from_the_shipped_files(single):
    ((index, parent, _),) = starts(GenerationRequest(single, (), n=1), {"a.py": "x"})
    assert index == 0 and parent.variant_id == "" and parent.files == {"a.py": "x"}
