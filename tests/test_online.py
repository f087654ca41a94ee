"""The continual trainer's logic, fed in memory (no Kafka, no RocksDB)."""

from __future__ import annotations

import math

import pytest
import torch

from elcrec.model import ELCRecConfig
from elcrec.online import MISS, OnlineConfig, OnlineTrainer, SequenceUpdate, Vocabulary
from elcrec.stream_baselines import MostPopular, RecentPopular, Transitions
from elcrec.synthetic import SyntheticClickstream

SMALL = ELCRecConfig(
    n_layer=1, n_intents=8, block_size=12, dropout=0.1, attn_dropout=0.1
)


def stream_updates(stream, batch: int = 64):
    """Batches of one-new-event updates, as the ingest consumer emits them."""
    seqs: dict[str, list[str]] = {}
    out = []
    for e in stream.interactions():
        seqs.setdefault(e.user, []).append(e.item)
        out.append(SequenceUpdate(e.user, list(seqs[e.user][-13:]), 1))
        if len(out) == batch:
            yield out
            out = []
    if out:
        yield out


def test_vocabulary_recycles_the_least_recently_seen_row_when_full():
    vocab = Vocabulary(capacity=3)
    assert vocab.add(["a", "b", "c"], step=0) == ([1, 2, 3], [])
    vocab.add(["a", "c"], step=1)  # b is now the least recently seen
    new, recycled = vocab.add(["d"], step=2)
    assert (new, recycled) == ([], [2])
    assert vocab.lookup("d") == 2 and vocab.lookup("b") == 0
    assert vocab.ids == ["a", "d", "c"]


def test_vocabulary_never_recycles_a_row_the_batch_uses():
    vocab = Vocabulary(capacity=2)
    vocab.add(["a", "b"], step=0)
    with pytest.raises(Exception, match="raise vocab_capacity"):
        vocab.add(["a", "b", "c"], step=1)


def test_growing_the_item_table_keeps_rows_and_optimizer_moments():
    trainer = OnlineTrainer(SMALL, OnlineConfig(replay_per_step=0))
    trainer.learn_many([SequenceUpdate("u", ["a", "b", "c", "a"], n_new=4)])
    weight = trainer.model.tok_emb.weight.detach().clone()
    moment = trainer.optimizer.state[trainer.model.tok_emb.weight]["exp_avg"].clone()

    trainer.learn_many([SequenceUpdate("v", ["d", "e"], n_new=2)])
    assert trainer.model.n_items == 5 and len(trainer.vocab) == 5
    new_weight = trainer.model.tok_emb.weight
    state = trainer.optimizer.state[new_weight]
    assert state["exp_avg"].shape == new_weight.shape
    # Rows of items a, b, c were not in the second batch's gradient except via
    # negatives, so compare the moments as they were grown: decayed, not lost.
    assert torch.count_nonzero(state["exp_avg"][1:4]) > 0
    assert moment.shape[0] == 5 and weight.shape[0] == 5


def test_prequential_ranks_are_taken_before_learning():
    trainer = OnlineTrainer(SMALL, OnlineConfig(replay_per_step=0, metrics_window=10))
    report = trainer.learn_many([SequenceUpdate("u", ["a", "b"], n_new=2)])
    # "a" is predicted from the empty sequence, "b" after "a"; with two known
    # items and "a" excluded as seen, "b" ranks first.
    assert report.events == 2
    assert trainer.metrics.count == 2
    assert report.ranks[1] == 0
    assert trainer.live_metrics()["hr@5"] == 1.0

    # A repeated item is a miss: seen items are excluded.
    report = trainer.learn_many([SequenceUpdate("u", ["a", "b", "a"], n_new=1)])
    assert report.ranks == [MISS]
    assert trainer.live_metrics()["hr@20"] == pytest.approx(2 / 3)


def test_continual_model_learns_planted_intents_better_than_popularity():
    stream = SyntheticClickstream(
        n_users=300, n_items=120, n_intents=6, events_per_user=25, seed=4
    )
    trainer = OnlineTrainer(
        SMALL,
        OnlineConfig(
            fresh_per_step=64, replay_per_step=64, lr=3e-3, metrics_window=2500
        ),
    )
    popular = MostPopular()
    seqs: dict[str, list[str]] = {}
    pop_hits = []
    for batch in stream_updates(stream):
        trainer.learn_many(batch)
    for e in stream.interactions():
        history = seqs.setdefault(e.user, [])
        pop_hits.append(popular.rank_one(history, e.item) < 20)
        popular.learn_one(history, e.item)
        history.append(e.item)
    model_hr = trainer.live_metrics()["hr@20"]
    popular_hr = sum(pop_hits[-2500:]) / 2500
    assert model_hr > popular_hr + 0.1, (model_hr, popular_hr)


def test_checkpoint_resume_gives_identical_next_steps(tmp_path):
    stream = SyntheticClickstream(
        n_users=60, n_items=40, n_intents=4, events_per_user=10, seed=2
    )
    batches = list(stream_updates(stream, batch=50))
    trainer = OnlineTrainer(SMALL, OnlineConfig(fresh_per_step=32, replay_per_step=16))
    for b in batches[:6]:
        trainer.learn_many(b)
    trainer.save_checkpoint(tmp_path / "ckpt.pt", extra={"offsets": {"0": 41}})

    # Dropout draws from torch's global generator, which the checkpoint holds:
    # run the original on, then the resumed copy, never interleaved.
    expected = [trainer.learn_many(b) for b in batches[6:]]
    resumed, extra = OnlineTrainer.load_checkpoint(tmp_path / "ckpt.pt")
    assert extra == {"offsets": {"0": 41}}
    for b, a in zip(batches[6:], expected, strict=True):
        r = resumed.learn_many(b)
        assert a.losses == pytest.approx(r.losses, rel=1e-5, abs=1e-6)
        assert a.assignments == r.assignments
    assert trainer.live_metrics() == resumed.live_metrics()
    assert trainer.step == resumed.step


def test_a_non_finite_loss_skips_the_step_and_leaves_weights_unchanged():
    trainer = OnlineTrainer(SMALL, OnlineConfig(replay_per_step=0))
    trainer.learn_many([SequenceUpdate("u", ["a", "b", "c"], n_new=3)])
    with torch.no_grad():
        trainer.model.tok_emb.weight[2, 0] = math.inf
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    report = trainer.learn_many([SequenceUpdate("u", ["a", "b", "c", "a"], n_new=1)])
    assert report.skipped == 1 and report.steps == 0
    assert trainer.skipped_steps == 1
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "centers_ready")
    assert not trainer.parameters_finite()


def test_streaming_baselines_rank_with_seen_items_excluded():
    pop, recent, trans = MostPopular(), RecentPopular(half_life=2), Transitions()
    events = [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "b"),
        ("u3", "c"),
        ("u3", "c"),
    ]
    hist: dict[str, list[str]] = {}
    for user, item in events:
        for m in (pop, recent, trans):
            m.learn_one(hist.setdefault(user, []), item)
        hist[user].append(item)
    # Counts a=2, b=2, c=2: with "a" seen, b and c tie; ties count against.
    assert pop.rank_one(["a"], "b") == 1
    # Recent popularity: c is the freshest.
    assert recent.rank_one([], "c") == 0
    # After "a", "b" always followed.
    assert trans.rank_one(["a"], "b") == 0
    assert pop.rank_one(["a"], "a") == MISS  # a seen item is a miss
    assert pop.rank_one([], "zzz") == MISS  # an unseen item is a miss


def test_updates_of_one_user_are_merged_only_when_no_event_is_lost():
    trainer = OnlineTrainer(SMALL, OnlineConfig(replay_per_step=0))
    items = [f"i{n}" for n in range(30)]
    # Two updates that each carry 10 items, all new: merging them would keep
    # only the last 10 of 20 new events.
    report = trainer.learn_many(
        [
            SequenceUpdate("u", items[:10], n_new=10),
            SequenceUpdate("u", items[10:20], n_new=10),
        ]
    )
    assert len(report.ranks) == 20 and trainer.events_seen == 20
    # Updates whose last one carries every new event are merged into one.
    report = trainer.learn_many(
        [
            SequenceUpdate("u", items[:22], n_new=1),
            SequenceUpdate("u", items[:23], n_new=1),
        ],
        steps_per_batch=1,
    )
    assert len(report.ranks) == 2 and report.steps == 1
