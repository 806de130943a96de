"""``nets classify`` on a real Dask LocalCluster (no mocks): the same rows as one process, each row
exactly once and in order even when a worker process is killed mid-task, per-worker thread budgets."""

import os
import threading

import pytest
from classify_data import (
    MISSING,
    MODEL_OPTIONS,
    close_fd,
    fifo_reader_pids,
    kill,
    make_images,
    open_fifo_writer,
    small_model,
    wait_for,
)

import nets
from nets.cli import main
from nets.tools.classify import read_rows
from nets.tools.classify.cluster import usable_cores

SMALL = ["--input-shape", "64,64,3", "--alpha", "0.25"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return str(root), make_images(root)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def local_rows(collection):
    return nets.classify(small_model(), [collection[0], MISSING], recursive=True, batch=4)


def same_rows(got, want, rel=1e-5):
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want):
        assert (g["error"] is None) == (w["error"] is None), (g, w)
        assert [t["index"] for t in g["top"]] == [t["index"] for t in w["top"]], (g, w)
        for a, b in zip(g["top"], w["top"]):
            assert a["label"] == b["label"] and abs(a["prob"] - b["prob"]) <= rel * b["prob"]


def test_a_model_object_is_never_shipped(collection):
    with pytest.raises(nets.ModelError, match="never pickled"):
        nets.classify(small_model(), collection[1][:2], cluster="tcp://127.0.0.1:1")


@pytest.mark.slow
def test_two_workers_give_the_rows_of_one_process(client, collection, local_rows):
    run = nets.classify("mobilenet", [collection[0], MISSING], recursive=True, batch=4, cluster=client,
                        model_options=MODEL_OPTIONS, chunk_batches=1, stream=True)
    rows = list(run)
    same_rows(rows, local_rows)
    stats = run.worker_stats
    assert sorted(s["index"] for s in stats) == list(range(len(stats)))
    assert len({s["worker"] for s in stats}) == 2
    # each worker process's Numba threads: its share of the host (2 worker processes)
    assert {s["threads"] for s in stats} == {max(1, usable_cores() // 2)}


@pytest.mark.slow
def test_a_worker_killed_mid_task_still_gives_every_row_once(client, collection, local_rows, tmp_path):
    """One path is a FIFO: the worker that decodes it blocks inside the task; the test kills that
    worker process (SIGKILL), Dask reruns the chunk on another worker, and the run ends with every
    row once, in input order."""
    files = collection[1]
    fifo = str(tmp_path / "stall.png")
    os.mkfifo(fifo)
    at = 17                                             # batch 4, one batch per task: chunk 4, not the warm-up
    paths = files[:at] + [fifo] + files[at:]
    run = nets.classify("mobilenet", paths, batch=4, cluster=client, model_options=MODEL_OPTIONS,
                        chunk_batches=1, stream=True)
    out: list = []
    failure: list = []

    def consume():
        try:
            out.extend(run)
        except BaseException as e:         # noqa: BLE001 -- reported by the test thread
            failure.append(e)
    t = threading.Thread(target=consume, daemon=True)
    t.start()
    fd = open_fifo_writer(fifo)            # a worker's decoder has opened the FIFO and now waits for data
    pids = list(client.run(os.getpid).values())
    wait_for(lambda: fifo_reader_pids(fifo, pids), what="the worker reading the FIFO")
    victim = fifo_reader_pids(fifo, pids)[0]
    kill(victim)
    wait_for(lambda: not fifo_reader_pids(fifo, [victim]), what="the killed worker to close its files")
    os.close(fd)
    # the chunk's rerun opens the FIFO again (maybe already has): every reader gets end-of-file
    wait_for(lambda: not t.is_alive() or close_fd(open_fifo_writer(fifo, 0.05, quiet=True)), 600,
             what=f"the run to finish; Dask is processing {client.processing()}")
    assert not failure, failure
    assert [r["path"] for r in out] == paths
    fifo_row = out[at]
    assert fifo_row["error"] and fifo_row["top"] == []
    same_rows(out[:at] + out[at + 1:], [r for r in local_rows if r["path"] != MISSING])
    assert len({s["index"] for s in run.worker_stats}) == len(run.worker_stats)
    assert victim not in client.run(os.getpid).values()


@pytest.mark.slow
def test_cli_workers_matches_the_local_file(capsys, collection, tmp_path):
    local, dask = tmp_path / "local.csv", tmp_path / "dask.csv"
    argv = ["classify", "mobilenet", collection[0], MISSING, "--recursive", "--batch", "4", *SMALL]
    assert main(argv + ["--out", str(local), "--threads", "1", "--quiet"]) == 3
    assert main(argv + ["--out", str(dask), "--workers", "2"]) == 3
    text = capsys.readouterr().out
    assert "LocalCluster of 2 workers" in text and "done" in text
    same_rows(read_rows(dask), read_rows(local))


def test_unreachable_scheduler_is_one_line(capsys, collection, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from nets.tools.classify import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    code = main(["classify", "mobilenet", collection[1][0], "--out", str(tmp_path / "r.csv"),
                 "--scheduler", "tcp://127.0.0.1:9", *SMALL])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.csv").exists()
