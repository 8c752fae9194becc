"""The run store's crash-safety rules, without a loop around them."""

from __future__ import annotations

import pytest

from orchestrator.errors import StoreError
from orchestrator.result import Status, VariantResult
from orchestrator.runs.store import Store


def add(store: Store, vid: str, text: str):
    return store.add_variant(vid=vid, full_hash=vid * 4, parent_id=None, files={"a.py": text},
                             diff="", seed_diff="", call=None, seeds=[(0, "first")])


def test_a_folder_without_a_committed_row_is_debris_and_is_removed(tmp_path):
    store = Store(tmp_path / "r", create=True)
    store.init_run(tmp_path, "{}")
    row = add(store, "aaaa", "x = 1\n")
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
    assert (store.eval_folder(ev) / "result.json").is_file()
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
