"""Replay: contiguous sequences, online queue first, ring eviction, chunks on disk survive a restart."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trainer.replay import Replay, pack_mask, step_spec, unpack_mask

SPEC = step_spec((4, 4, 3))


def step(i: int, first: bool = False) -> dict:
    return {"image": np.full((4, 4, 3), i % 256, np.uint8), "action": np.int32(i % 7), "reward": np.float32(i),
            "is_first": first, "is_last": False, "is_terminal": False}


def fill(replay: Replay, n: int, start: int = 0, stream: int = 0, flush: bool = True) -> None:
    for i in range(start, start + n):
        replay.add(step(i, first=i == start), stream)
    if flush:
        replay.flush()  # the chunks completed so far are on disk


def test_sequences_are_contiguous_and_shaped() -> None:
    replay = Replay(SPEC, capacity=400, length=8, chunk_steps=16)
    fill(replay, 100)
    batch = replay.sample(5)
    assert batch["image"].shape == (5, 8, 4, 4, 3) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (5, 8) and batch["reward"].dtype == np.float32
    for rewards in batch["reward"]:
        assert np.array_equal(np.diff(rewards), np.ones(7))


def test_online_queue_serves_every_new_sequence_once_first() -> None:
    replay = Replay(SPEC, capacity=400, length=8, chunk_steps=16, seed=1)
    fill(replay, 24)  # three complete non-overlapping sequences: starts 0, 8, 16
    first = replay.sample(2)["reward"][:, 0]
    second = replay.sample(2)["reward"][:, 0]
    assert list(first) == [0, 8] and second[0] == 16  # then uniform draws fill the batch


def test_the_online_queue_stays_bounded_while_nothing_samples() -> None:
    # A paused learner (kept across restarts) or a crash-looping one: the actor goes on for days.
    replay = Replay(SPEC, capacity=40, length=8, chunk_steps=16)
    fill(replay, 4000)
    assert len(replay._online) <= 40 // 8 + 1
    # What is left is the newest sequences, each still in the ring and trained on first.
    assert list(replay.sample(5)["reward"][:, 0]) == [3960, 3968, 3976, 3984, 3992]


def test_ring_evicts_the_oldest_steps() -> None:
    replay = Replay(SPEC, capacity=40, length=8, chunk_steps=16)
    fill(replay, 100)
    starts = replay.sample(64)["reward"][:, 0]
    assert replay.size == 40 and starts.min() >= 60 and starts.max() <= 92


def test_chunks_restore_after_a_restart(tmp_path) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    fill(replay, 50)
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 3  # 48 steps in full chunks; 2 pending
    replay.close()
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 4
    again = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 50 and again.size == 50
    fill(again, 10, start=50)
    batch = again.sample(200)
    assert batch["reward"].min() == 0 and batch["reward"].max() == 59
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_keeps_the_newest_chunks_within_capacity(tmp_path) -> None:
    replay = Replay(SPEC, capacity=200, length=8, directory=tmp_path, chunk_steps=16)
    fill(replay, 160)
    again = Replay(SPEC, capacity=40, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32  # two newest 16-step chunks fit in 40
    assert again.sample(50)["reward"].min() >= 128


def test_damaged_chunk_is_skipped_and_the_gap_starts_a_new_sequence(tmp_path, caplog) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    fill(replay, 48)
    damaged = sorted(tmp_path.glob("chunk-*.npz"))[1]
    damaged.write_bytes(b"torn")
    again = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32
    assert "deleting damaged replay chunk" in caplog.text
    stream = again._streams[0]
    # The steps after the gap follow the ones before it as a new sequence: all 32 loaded steps can be sampled.
    assert stream.size == 32 and list(stream.window(0, 32)["reward"]) == [*range(16), *range(32, 48)]
    assert stream.window(16, 1)["is_first"][0]
    assert min(again.sample(64)["reward"][:, 0]) < 16  # the steps before the gap are sampled too
    # The file of the moved steps is renamed to their new numbers; new chunks follow on without a gap.
    assert sorted(int(p.stem.split("-")[2]) for p in tmp_path.glob("chunk-*.npz")) == [0, 16]
    with np.load(damaged) as moved:  # the damaged file was deleted; its name now holds the moved steps
        assert moved["reward"][0] == 32
    fill(again, 16, start=100)
    again.close()
    third = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert third.load() == 48 and third._streams[0].size == 48
    assert list(third._streams[0].window(32, 16)["reward"]) == list(range(100, 116))


def test_truncated_chunk_from_a_torn_write_is_skipped(tmp_path, caplog) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    fill(replay, 48)
    torn = sorted(tmp_path.glob("chunk-*.npz"))[2]
    torn.write_bytes(torn.read_bytes()[:200])  # a zip cut short: BadZipFile, not ValueError
    again = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32
    assert "BadZipFile" in caplog.text


def test_disk_keeps_only_what_a_restart_can_load(tmp_path) -> None:
    replay = Replay(SPEC, capacity=40, length=8, directory=tmp_path, chunk_steps=16)
    fill(replay, 160)  # ten chunks written; 40 steps of RAM hold two whole chunks and a part of a third
    starts = sorted(int(p.stem.split("-")[2]) for p in tmp_path.glob("chunk-*.npz"))
    assert starts == [128, 144]
    again = Replay(SPEC, capacity=40, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32


def test_too_small_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="replay capacity 20 is too small"):
        Replay(SPEC, capacity=20, length=8, chunk_steps=16)


def test_streams_never_mix_within_a_sequence() -> None:
    replay = Replay(SPEC, capacity=400, length=8, streams=2, chunk_steps=16)
    fill(replay, 50, start=0, stream=0)
    fill(replay, 50, start=1000, stream=1)
    for rewards in replay.sample(100)["reward"]:
        assert np.array_equal(np.diff(rewards), np.ones(7))


LATENT_SPEC = step_spec((4, 4, 3), latent=(6, 3))


def test_latents_are_kept_written_back_and_survive_a_restart(tmp_path) -> None:
    replay = Replay(LATENT_SPEC, capacity=400, length=9, directory=tmp_path, chunk_steps=16)
    for i in range(40):  # the actor's latents for even steps only
        latent = {"deter": np.full(6, i, np.float16), "stoch": np.full(3, i % 4, np.uint16), "latent_ok": True}
        replay.add({**step(i, first=i == 0), **(latent if i % 2 == 0 else {})})
    batch, positions = replay.sample_with_positions(4)
    assert batch["deter"].shape == (4, 9, 6) and batch["deter"].dtype == np.float16
    assert batch["stoch"].shape == (4, 9, 3) and batch["latent_ok"].shape == (4, 9)
    for row, (_, start) in zip(batch["reward"], positions, strict=True):
        assert row[0] == start  # positions name the first step of each sequence
    ok = batch["latent_ok"]
    assert np.array_equal(ok, batch["reward"] % 2 == 0)
    assert np.array_equal(batch["deter"][ok][:, 0], batch["reward"][ok])
    # Training writes the latents of steps start+1 .. start+8 (after one context step).
    deter = np.full((4, 8, 6), -1.0, np.float16)
    assert replay.write_latents(positions, deter, np.ones((4, 8, 3), np.int32), offset=1) == 32
    stream, start = positions[0]
    window = replay._streams[stream].window(start, 9)
    assert window["latent_ok"][1:].all() and (window["deter"][1:] == -1).all()
    replay.close()
    again = Replay(LATENT_SPEC, capacity=400, length=9, directory=tmp_path, chunk_steps=16)
    assert again.load() == 40
    assert again._streams[0].window(0, 1)["latent_ok"][0]  # the actor's latent of step 0 went to disk


def test_chunks_without_latents_load_into_a_context_replay(tmp_path) -> None:
    fill(Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16), 32)
    again = Replay(LATENT_SPEC, capacity=400, length=9, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32
    batch = again.sample(3)
    assert not batch["latent_ok"].any() and (batch["deter"] == 0).all()


def test_the_actor_does_not_wait_for_the_disk(tmp_path) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    release, writing, written = threading.Event(), threading.Event(), []
    slow_disk = replay._write_chunk

    def write(stream, start, data):
        writing.set()
        release.wait(timeout=30)  # a disk that hangs (a synchronous writer would hold `add` here)
        slow_disk(stream, start, data)
        written.append(start)

    replay._write_chunk = write
    fill(replay, 40, flush=False)  # two chunks complete while the first write hangs
    assert writing.wait(timeout=30) and written == []
    assert replay.size == 40 and replay.sample(4)["reward"].shape == (4, 8)
    release.set()
    replay.close()  # the queued chunks and the pending steps are written at a clean stop
    assert written == [0, 16, 32]
    again = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 40


def test_a_failing_disk_loses_only_the_chunk_and_is_reported(tmp_path, caplog) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    real = replay._write_chunk

    def write(stream, start, data):
        if start == 16:
            raise OSError(28, "No space left on device")
        real(stream, start, data)

    replay._write_chunk = write
    fill(replay, 48)
    replay.close()
    assert replay.write_errors == 1
    assert "could not write replay chunk of stream 0 at step 16" in caplog.text and "No space left" in caplog.text
    assert sorted(int(p.stem.split("-")[2]) for p in tmp_path.glob("chunk-*.npz")) == [0, 32]
    again = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert again.load() == 32 and again._streams[0].size == 32  # the gap starts a new sequence, as after a torn chunk
    assert again._streams[0].window(16, 1)["is_first"][0]


def test_a_write_cut_short_leaves_no_partial_file(tmp_path) -> None:
    replay = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    real_savez = np.savez

    def savez(fh, **data):
        real_savez(fh, **data)
        raise OSError(28, "No space left on device")  # after the bytes took the space

    np.savez = savez
    try:
        fill(replay, 16)
    finally:
        np.savez = real_savez
    assert replay.write_errors == 1 and list(tmp_path.iterdir()) == []  # the partial file gave its space back
    replay.close()
    (tmp_path / ".chunk-00-000000000016-000016.npz.tmp").write_bytes(b"half")  # a kill -9 mid-write
    Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16).close()
    assert not list(tmp_path.glob(".*.tmp"))


def test_with_replay_context_the_online_queue_trains_every_new_step() -> None:
    replay = Replay(SPEC, capacity=400, length=9, chunk_steps=16, context=1)  # 8 trained steps after 1 of context
    fill(replay, 33)
    starts = [int(replay.sample(1)["reward"][0, 0]) for _ in range(4)]
    assert starts == [0, 8, 16, 24]  # the trained steps 1..8, 9..16, ... follow each other: none is skipped


def test_sampling_into_reused_buffers_matches_the_ring_also_across_its_end() -> None:
    replay = Replay(SPEC, capacity=40, length=8, chunk_steps=16)
    fill(replay, 100)  # the ring wrapped: steps 60..99 are in RAM, some windows cross the array's end
    out = replay.batch_buffers(64)
    for _ in range(3):
        batch, positions = replay.sample_with_positions(64, out=out)
        assert all(batch[k] is out[k] for k in out)  # filled in place: no new 12 MB arrays per update
        for row, (_stream, start) in enumerate(positions):
            assert np.array_equal(batch["reward"][row], np.arange(start, start + 8, dtype=np.float32))
            assert np.array_equal(batch["image"][row][:, 0, 0, 0], np.arange(start, start + 8) % 256)
            assert np.array_equal(batch["action"][row], np.arange(start, start + 8) % 7)
        assert any(start % 40 > 32 for _, start in positions)  # the wrap-around path was taken


def test_action_masks_are_stored_and_chunks_without_them_load_as_all_legal(tmp_path) -> None:
    old = Replay(SPEC, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    fill(old, 32)  # two chunks written before masks were kept
    old.close()
    masked = Replay(step_spec((4, 4, 3), mask=5), capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert masked.load() == 32
    for i in range(32, 48):
        legal = np.arange(5) == i % 5
        masked.add({**step(i), "action_mask": legal if i % 2 else legal.astype(np.int8)})  # bools or 0/1s
    batch = masked.sample(40)
    assert batch["action_mask"].shape == (40, 8, 1) and batch["action_mask"].dtype == np.uint8  # packed
    for rewards, masks in zip(batch["reward"], unpack_mask(batch["action_mask"], 5), strict=True):
        for r, legal in zip(rewards, masks, strict=True):
            expected = np.ones(5, bool) if r < 32 else np.arange(5) == int(r) % 5
            assert np.array_equal(legal, expected), (r, legal)


@pytest.mark.parametrize("n", [1, 8, 13, 64, 4096])
def test_masks_are_packed_eight_actions_a_byte_and_unpack_exactly(n) -> None:
    rng = np.random.default_rng(n)
    mask = rng.random((3, 7, n)) < 0.3
    packed = pack_mask(mask)
    assert packed.shape == (3, 7, (n + 7) // 8) and packed.dtype == np.uint8
    assert np.array_equal(unpack_mask(packed, n), mask)
    assert np.array_equal(unpack_mask(pack_mask(np.ones(n, bool)), n), np.ones(n, bool))


def test_a_chunk_with_unpacked_masks_loads_packed(tmp_path) -> None:
    """Chunks written while masks were kept as one byte per action (before packing) still load."""
    spec = step_spec((4, 4, 3), mask=12)
    legal = np.arange(12)[None, :] % 3 == np.arange(16)[:, None] % 3
    steps = {"image": np.zeros((16, 4, 4, 3), np.uint8), "action": np.zeros(16, np.int32),
             "reward": np.arange(16, dtype=np.float32), "is_first": np.arange(16) == 0,
             "is_last": np.zeros(16, bool), "is_terminal": np.zeros(16, bool), "action_mask": legal}
    np.savez(tmp_path / "chunk-00-000000000000-000016.npz", **steps)
    replay = Replay(spec, capacity=400, length=8, directory=tmp_path, chunk_steps=16)
    assert replay.load() == 16
    batch = replay.sample(4)
    for rewards, masks in zip(batch["reward"], unpack_mask(batch["action_mask"], 12), strict=True):
        assert np.array_equal(masks, legal[rewards.astype(int)])


@pytest.mark.parametrize("capacity", [48, 400], ids=["small-ring-copies-in-the-actor", "copies-in-the-writer"])
def test_chunks_written_late_hold_exactly_their_steps(tmp_path, capacity) -> None:
    """A hung disk while the ring goes round: with room to spare the writer copies each chunk itself; a ring too
    small for the queue gets its copy from the actor, before the steps can be overwritten."""
    replay = Replay(SPEC, capacity=capacity, length=8, directory=tmp_path, chunk_steps=16)
    assert replay._lazy_copy == (capacity == 400)
    release, real = threading.Event(), replay._write_chunk

    def write(stream, start, data):
        release.wait(timeout=30)
        real(stream, start, data)

    replay._write_chunk = write
    fill(replay, 80, flush=False)  # five chunks: one being written, four queued; a 48-step ring wrapped over them
    release.set()
    replay.close()
    assert replay.write_errors == 0
    for path in sorted(tmp_path.glob("chunk-*.npz")):
        start = int(path.stem.split("-")[2])
        with np.load(path) as chunk:
            assert list(chunk["reward"]) == list(range(start, start + len(chunk["reward"])))
            assert (chunk["image"][:, 0, 0, 0] == np.arange(start, start + len(chunk["reward"])) % 256).all()
