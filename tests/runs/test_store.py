"""The run store's crash-safety rules, without a loop around them."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.generators.base import GenerationCall
from orchestrator.result import Status, VariantResult
from orchestrator.runs.rows import VariantRecord
from orchestrator.runs.store import Store


def add(store: Store, vid: str, text: str, parent_id: str | None = None) -> VariantRecord:
    return store.add_variant(vid=vid, full_hash=vid * 4, parent_id=parent_id,
                             files={"a.py": text}, diff="", seed_diff="", call=None,
                             seeds=[(0, "first")])


def test_a_folder_without_a_committed_row_is_debris_and_is_removed(tmp_path):
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    row = add(store, "aaaa", "x = 1\n").variant
    debris = tmp_path / "r" / "variants" / "0001-bbbb"
    (debris / "source").mkdir(parents=True)
    assert store.remove_debris() == [debris]
    assert row.folder.exists() and row.files() == {"a.py": "x = 1\n"}


def test_an_evaluation_is_finished_once_and_only_once(tmp_path):
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    add(store, "aaaa", "x = 1\n")
    (ev,) = store.evaluations("pending")
    result = VariantResult(variant_id="aaaa", status=Status.OK, metrics={"m": 1.0})
    store.finish_evaluation(ev, result, 1.0)
    assert (ev.folder / "result.json").is_file()
    with pytest.raises(StoreError, match="already finished"):
        store.finish_evaluation(ev, result, 1.0)
    (done,) = store.evaluations("done")
    assert done.metric == 1.0 and done.attempts == 1


def test_opening_a_folder_that_is_not_a_run_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="not a run"):
        Store(tmp_path / "nothing")


def test_evaluations_carry_the_results_error_read_in_sql(tmp_path):
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    add(store, "aaaa", "x = 1\n")
    add(store, "bbbb", "x = 2\n")
    failed, ok = store.evaluations("pending")
    store.finish_evaluation(failed, VariantResult(variant_id="aaaa", status=Status.CRASH,
                                                  error="exited with code 1"), 1.0)
    store.finish_evaluation(ok, VariantResult(variant_id="bbbb", status=Status.OK,
                                              metrics={"m": 1.0}), 1.0)
    assert [e.error for e in store.evaluations("done")] == ["exited with code 1", None]


def new_store(tmp_path) -> Store:
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    return store


def finish(store: Store, ev, metric: float | None, **result) -> VariantRecord:
    status = Status.OK if metric is not None else Status.CRASH
    return store.finish_evaluation(
        ev, VariantResult(variant_id=ev.variant_id, status=status, **result), metric)


def test_adding_a_variant_returns_it_with_its_pending_evaluations(tmp_path):
    store = new_store(tmp_path)
    record = store.add_variant(vid="aaaa", full_hash="h", parent_id=None, files={"a.py": "x\n"},
                               diff="", seed_diff="", call=None,
                               seeds=[(0, "noise"), (1, "noise")])
    assert record.variant == store.variant("aaaa")
    assert list(record.evaluations) == store.evaluations("pending", variant_id="aaaa")
    assert [(e.seed, e.purpose, e.state) for e in record.evaluations] == [
        (0, "noise", "pending"), (1, "noise", "pending")]
    assert [e.folder for e in record.evaluations] == [
        record.variant.folder / "eval-0", record.variant.folder / "eval-1"]
    assert not record.settled


def test_finishing_an_evaluation_returns_its_variant_settled_only_once_all_are_done(tmp_path):
    store = new_store(tmp_path)
    first, second = store.add_variant(
        vid="aaaa", full_hash="h", parent_id=None, files={"a.py": "x\n"}, diff="", seed_diff="",
        call=None, seeds=[(0, "noise"), (1, "noise")]).evaluations
    half = finish(store, first, 2.0, metrics={"m": 2.0})
    assert not half.settled and half.metrics == [2.0, None]
    assert half.variant.idx == 0 and half.evaluations[0].state == "done"
    whole = finish(store, second, 4.0, metrics={"m": 4.0})
    assert whole.settled and whole.metrics == [2.0, 4.0]
    assert list(whole.evaluations) == store.evaluations(variant_id="aaaa")


def test_a_verdict_commits_with_the_noise_and_the_recheck_it_asks_for(tmp_path):
    store = new_store(tmp_path)
    (ev,) = add(store, "aaaa", "x = 1\n").evaluations
    finish(store, ev, 1.0)
    assert store.set_verdict("aaaa", "admitted", 1.0, noise=0.25) is None
    assert store.run_info()["noise"] == 0.25
    recheck = store.set_verdict("aaaa", "recheck", 1.0, recheck_seed=7)
    assert recheck is not None and recheck == store.evaluation(recheck.id)
    assert (recheck.variant_id, recheck.seed, recheck.purpose, recheck.state) == (
        "aaaa", 7, "recheck", "pending")
    assert store.variant("aaaa").verdict == "recheck"


def test_a_verdict_whose_recheck_cannot_be_queued_is_not_written_either(tmp_path):
    store = new_store(tmp_path)
    (ev,) = add(store, "aaaa", "x = 1\n").evaluations
    finish(store, ev, 1.0)
    with pytest.raises(sqlite3.IntegrityError):  # seed 0 is taken: (variant, seed) is unique
        store.set_verdict("aaaa", "recheck", 1.0, noise=0.5, recheck_seed=0)
    assert store.variant("aaaa").verdict is None and store.run_info()["noise"] is None
    assert len(store.evaluations(variant_id="aaaa")) == 1


def test_evaluations_filter_by_state_and_variant_and_one_is_found_by_id(tmp_path):
    store = new_store(tmp_path)
    (a,) = add(store, "aaaa", "x = 1\n").evaluations
    (b,) = add(store, "bbbb", "x = 2\n").evaluations
    finish(store, a, 1.0)
    assert [e.id for e in store.evaluations("done")] == [a.id]
    assert [e.id for e in store.evaluations("pending")] == [b.id]
    assert [e.id for e in store.evaluations(variant_id="bbbb")] == [b.id]
    assert store.evaluations("done", variant_id="bbbb") == []
    assert store.evaluation(b.id) == b
    with pytest.raises(StoreError, match="no evaluation 99"):
        store.evaluation(99)


def test_a_retried_evaluation_comes_back_pending_with_its_attempt_counted(tmp_path):
    store = new_store(tmp_path)
    (ev,) = add(store, "aaaa", "x = 1\n").evaluations
    again = store.retry_evaluation(ev)
    assert (again.id, again.state, again.attempts) == (ev.id, "pending", ev.attempts + 1)


def test_the_call_count_counts_every_generation_call_of_any_outcome(tmp_path):
    store = new_store(tmp_path)
    add(store, "aaaa", "x = 1\n")  # the seed: no call
    call = GenerationCall(backend="fake", model="m", prompt="p", response="r")
    store.add_variant(vid="bbbb", full_hash="hb", parent_id="aaaa", files={"a.py": "x = 2\n"},
                      diff="", seed_diff="", call=call, seeds=[(0, "first")])
    store.add_call(call, "aaaa", "rejected", rejection="syntax: no")
    store.add_call(call, "aaaa", "duplicate", variant_id="bbbb")
    assert store.call_count() == len(store.calls()) == 3


def test_ancestors_run_from_the_parent_back_to_the_seed(tmp_path):
    store = new_store(tmp_path)
    add(store, "aaaa", "x = 1\n")
    add(store, "bbbb", "x = 2\n", parent_id="aaaa")
    add(store, "cccc", "x = 3\n", parent_id="bbbb")
    add(store, "dddd", "x = 4\n", parent_id="aaaa")
    assert [v.id for v in store.ancestors("cccc")] == ["bbbb", "aaaa"]
    assert [v.id for v in store.ancestors("dddd")] == ["aaaa"]
    assert store.ancestors("aaaa") == []


def test_a_variant_is_found_by_its_id_or_a_unique_prefix_of_it(tmp_path):
    store = new_store(tmp_path)
    add(store, "ab12", "x = 1\n")
    add(store, "ab34", "x = 2\n")
    add(store, "ab", "x = 3\n")
    assert store.variant("ab").id == "ab", "an exact id wins over the ids it prefixes"
    assert store.variant("ab3").id == "ab34"
    with pytest.raises(StoreError, match="3 variants matching 'a'"):
        store.variant("a")
    with pytest.raises(StoreError, match="0 variants matching 'ab1%'"):
        store.variant("ab1%")  # a prefix, not a pattern


def test_settled_variants_come_in_the_order_their_last_evaluation_finished(tmp_path):
    store = new_store(tmp_path)
    (a,) = add(store, "aaaa", "x = 1\n").evaluations
    (b,) = add(store, "bbbb", "x = 2\n").evaluations
    (c,) = add(store, "cccc", "x = 3\n").evaluations
    finish(store, b, 2.0)
    finish(store, a, 1.0)
    recheck = store.set_verdict("bbbb", "recheck", 2.0, recheck_seed=1)
    assert [r.variant.id for r in store.settled()] == ["aaaa"], "b has a pending recheck"
    finish(store, recheck, 2.0)
    assert [r.variant.id for r in store.settled()] == ["aaaa", "bbbb"]
    assert [len(r.evaluations) for r in store.settled()] == [1, 2]
    assert "cccc" not in {r.variant.id for r in store.settled()} and c.state == "pending"


def test_failed_evaluations_are_the_last_few_failures_oldest_first(tmp_path):
    store = new_store(tmp_path)
    evs = [add(store, vid, f"x = {i}\n").evaluations[0]
           for i, vid in enumerate(["aaaa", "bbbb", "cccc", "dddd", "eeee"])]
    for ev, metric in zip(evs, [None, 1.0, None, None, None], strict=True):
        finish(store, ev, metric, error=f"{ev.variant_id} broke" if metric is None else None)
    assert [e.variant_id for e in store.failed_evaluations(last=3)] == ["cccc", "dddd", "eeee"]
    assert [e.error for e in store.failed_evaluations(last=1)] == ["eeee broke"]


def test_images_by_variant_are_read_from_the_finished_results(tmp_path):
    store = new_store(tmp_path)
    (a,) = add(store, "aaaa", "x = 1\n").evaluations
    (b,) = add(store, "bbbb", "x = 2\n").evaluations
    add(store, "cccc", "x = 3\n")  # pending: no result, no image
    finish(store, a, 1.0, image="img:a")
    finish(store, b, None)  # a result without an image
    recheck = store.set_verdict("aaaa", "recheck", 1.0, recheck_seed=1)
    finish(store, recheck, 1.0, image="img:a2")
    assert store.images_by_variant() == {"aaaa": {"img:a", "img:a2"}}
