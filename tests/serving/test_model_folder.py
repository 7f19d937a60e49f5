"""Model folders: what serving needs is checked at deploy time, with messages that help."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from despina.core.errors import ModelError, NotFoundError
from despina.jobs.model_folder import check_extractor, check_model_folder
from despina.models.cnn import SmallCNN
from despina.models.export import export_classifier
from despina.serving.model import ServingModel
from despina.serving.settings import ServingSettings


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallCNN(3, 5, width=8, depth=2).eval()
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    assert export_classifier(model, tmp_path / "m.onnx", x) < 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    logits, emb = session.run(None, {"x": x[:3]})  # another batch size: the axis is dynamic
    with torch.no_grad():
        e = model.embed(torch.from_numpy(x[:3]))
        np.testing.assert_allclose(emb, e.numpy(), atol=1e-4)
        np.testing.assert_allclose(logits, model.head(e).numpy(), atol=1e-4)


def test_a_complete_folder_loads(digits_model: Path) -> None:
    model = ServingModel(digits_model)
    assert model.class_names == [str(i) for i in range(10)]
    assert model.index.ntotal == len(model.ids) > 1000
    assert model.reference["onnx_max_difference"] < 1e-4


def test_a_lone_session_with_more_threads_gives_the_same_answers(digits_model: Path) -> None:
    one = ServingModel(digits_model)
    both = ServingModel(digits_model, threads=1, lone_threads=2)
    assert one.lone_session is one.session and both.lone_session is not both.session
    x = np.random.default_rng(0).random((4, *both.session.get_inputs()[0].shape[1:]))
    a, b = both.infer(x.astype(np.float32)), both.infer(x.astype(np.float32), lone=True)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    assert (a.neighbors == b.neighbors).all()


def test_a_lone_call_may_use_every_core_unless_told_otherwise(
    digits_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import despina.serving.deployment as deployment

    def threads(session: Any) -> int:
        return int(session.get_session_options().intra_op_num_threads)

    monkeypatch.setattr(deployment, "usable_cores", lambda: 3)
    auto = deployment.Deployment("d", digits_model, settings=ServingSettings(threads=1))
    told = deployment.Deployment(
        "d", digits_model, settings=ServingSettings(threads=1, lone_threads=1)
    )
    try:
        assert (threads(auto.model.session), threads(auto.model.lone_session)) == (1, 3)
        assert told.model.lone_session is told.model.session
    finally:
        auto.close()
        told.close()


def test_only_the_lone_session_spins_and_the_environment_can_turn_it_off(
    digits_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spins(session: Any) -> str:
        options = session.get_session_options()
        return str(options.get_session_config_entry("session.intra_op.allow_spinning"))

    default = ServingModel(digits_model, threads=1, lone_threads=2)
    assert (spins(default.session), spins(default.lone_session)) == ("0", "1")
    monkeypatch.setenv("DESPINA_LONE_SPINNING", "0")
    settings = ServingSettings.from_env(threads=1, lone_threads=2)
    assert settings.lone_spinning is False
    told = ServingModel(
        digits_model, threads=1, lone_threads=2, lone_spinning=settings.lone_spinning
    )
    assert (spins(told.session), spins(told.lone_session)) == ("0", "0")
    # Two threads for every call: a lone one still gets a spinning session of its own.
    two = ServingModel(digits_model, threads=2, lone_threads=2)
    assert (spins(two.session), spins(two.lone_session)) == ("0", "1")
    single = ServingModel(digits_model, threads=1, lone_threads=1)  # no thread to spin
    assert single.lone_session is single.session


def test_a_serving_process_keeps_opencv_to_the_threads_it_is_told(digits_model: Path) -> None:
    import cv2

    from despina.serving.deployment import Deployment

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        Deployment("d", digits_model, settings=ServingSettings(opencv_threads=0)).close()
        assert cv2.getNumThreads() == 2  # 0: left as it was
        Deployment("d", digits_model).close()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_searches_use_one_openmp_thread_on_whichever_thread_runs_them(
    digits_model: Path,
) -> None:
    """OpenMP's thread count belongs to the calling thread: a batcher thread searching on
    every core spent 10% of a serving process's CPU in FAISS's spinning threads."""
    import faiss

    model = ServingModel(digits_model)
    x = np.zeros((2, *model.session.get_inputs()[0].shape[1:]), np.float32)
    seen: list[int] = []

    def search_on_a_new_thread() -> None:
        faiss.omp_set_num_threads(2)  # what a fresh thread gets on a two-core machine
        model.infer(x)
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=search_on_a_new_thread)
    thread.start()
    thread.join()
    assert seen == [1]


@pytest.mark.parametrize("missing", ["model.onnx", "index.faiss", "reference.json"])
def test_an_incomplete_folder_is_refused(digits_model: Path, tmp_path: Path, missing: str) -> None:
    folder = tmp_path / "model"
    shutil.copytree(digits_model, folder)
    (folder / missing).unlink()
    with pytest.raises(ModelError, match=f"missing {missing}.*re-run `despina audit`"):
        check_model_folder(folder)


def test_a_folder_from_another_version_is_refused(digits_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(digits_model, folder)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(ModelError, match=r"format version 1 .* serves version 2"):
        ServingModel(folder)


def test_a_missing_folder_and_detector(tmp_path: Path, digits_model: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        check_model_folder(tmp_path / "nope")
    with pytest.raises(NotFoundError, match="train-detector"):
        check_extractor("learned", digits_model)


def test_only_a_lone_model_call_under_the_inline_bound_runs_on_the_event_loop(
    digits_model: Path,
) -> None:
    """A lone small upload whose model call is under ``inline_call_ms`` (5 ms by default:
    a reference-cost CNN of 2 ms a call answered at concurrency 1 in 1.11x bare inline,
    1.23x through the batcher) runs on the loop; a dearer call, or a large upload, goes
    to the batcher's thread, with the same answer."""
    import asyncio

    import cv2
    from sklearn.datasets import load_digits

    from despina.serving.deployment import Deployment

    image = (load_digits().images[3] * 16).astype(np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    dep = Deployment("d", digits_model)
    try:
        assert 0 < dep.model.call_ms < 1000

        async def decision() -> bool:  # on a running loop with nothing else ready
            dep.inflight = 1
            try:
                assert not dep.runs_inline(small=False)
                return dep.runs_inline(small=True)
            finally:
                dep.inflight = 0

        answers = []
        assert dep.settings.inline_call_ms == 5.0
        for call_ms, inline in ((0.3, True), (2.0, True), (6.0, False)):
            dep.model.call_ms = call_ms
            assert asyncio.run(decision()) is inline
            answers.append(asyncio.run(dep.predict(png))["objects"][0]["top_k"])
        assert answers[0] == answers[1] == answers[2]
    finally:
        dep.close()


def test_requests_waiting_on_the_loop_go_to_the_batcher_even_for_a_cheap_model(
    digits_model: Path,
) -> None:
    """A request answered inline never yields, so the requests behind it never count as
    in flight: without looking at the loop's ready callbacks, every request of a loaded
    cheap-model endpoint ran inline, one at a time, and none was batched."""
    import asyncio

    import cv2
    from sklearn.datasets import load_digits

    from despina.serving.deployment import Deployment

    png = cv2.imencode(".png", (load_digits().images[5] * 16).astype(np.uint8))[1].tobytes()
    dep = Deployment("d", digits_model)
    calls: list[tuple[str, int]] = []

    def watched(fn: Any) -> Any:
        def call(x: np.ndarray) -> Any:
            calls.append((threading.current_thread().name, len(x)))
            return fn(x)

        return call

    dep.batcher.fn, dep.batcher.alone_fn = watched(dep.batcher.fn), watched(dep.batcher.alone_fn)

    async def together(n: int) -> list[dict[str, Any]]:
        return await asyncio.gather(*(dep.predict(png) for _ in range(n)))

    try:
        dep.model.call_ms = 0.3  # cheap: a lone request would run inline
        answers = asyncio.run(together(8))
        assert len({json.dumps(a["objects"]) for a in answers}) == 1
        inline = sum(rows for thread, rows in calls if thread == "MainThread")
        batched = sum(rows for thread, rows in calls if thread != "MainThread")
        assert inline <= 1 and batched >= 7, calls
    finally:
        dep.close()


def test_a_lone_call_takes_every_core_only_while_the_other_server_processes_are_idle(
    digits_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `despina serve --workers N`, a call alone in its process may share the cores
    with the other processes' calls; it marks its process busy while in flight."""
    import asyncio

    import cv2
    from sklearn.datasets import load_digits

    from despina.serving.deployment import Deployment
    from despina.serving.peers import PeerSlots, create_peers_file
    from despina.serving.settings import PEER_SLOT, PEERS_FILE

    peers = tmp_path / "peers"
    create_peers_file(peers, 2)
    monkeypatch.setenv(PEERS_FILE, str(peers))
    monkeypatch.setenv(PEER_SLOT, "0")
    other = PeerSlots(peers, 1)  # the other server process
    png = cv2.imencode(".png", (load_digits().images[7] * 16).astype(np.uint8))[1].tobytes()
    dep = Deployment("d", digits_model)
    seen: list[tuple[bool, bool]] = []  # (lone, this process marked busy)
    infer = dep.model.infer

    def watched(x: np.ndarray, lone: bool = False) -> Any:
        seen.append((lone, other.others_busy()))
        return infer(x, lone=lone)

    dep.model.infer = watched  # type: ignore[method-assign]
    try:
        first = asyncio.run(dep.predict(png))
        assert seen == [(True, True)] and not other.others_busy()
        other.mark(True)
        second = asyncio.run(dep.predict(png))
        assert seen[1] == (False, True)
        assert first["objects"] == second["objects"]
        # Other requests in flight in this process (read, or being answered): a call
        # with an empty queue behind it is still not alone.
        other.mark(False)
        rows = dep.prepare(png).rows
        for inflight, lone in ((1, True), (2, False)):
            dep.inflight = inflight
            dep._infer_lone(rows)
            assert seen[-1][0] is lone
    finally:
        dep.close()
