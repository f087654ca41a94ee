"""Offline protocol, trainer, checkpoints, baselines and the train/evaluate CLI."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from elcrec.cli import main as cli_main
from elcrec.data import SequenceData
from elcrec.exceptions import ConfigError, DataError
from elcrec.model import ELCRecConfig
from elcrec.offline import (
    LeaveOneOut,
    OfflineTrainer,
    TrainConfig,
    load_checkpoint,
    most_popular,
)
from elcrec.synthetic import SyntheticClickstream

TINY = ELCRecConfig(n_embd=16, n_head=2, n_layer=1, block_size=8, n_intents=3)


def adjusted_mutual_information(a: list, b: list) -> float:
    """AMI with arithmetic-mean normalisation (as scikit-learn's default)."""
    n = len(a)
    ca, cb, cab = Counter(a), Counter(b), Counter(zip(a, b, strict=True))
    mi = sum(c / n * math.log(c * n / (ca[x] * cb[y])) for (x, y), c in cab.items())

    def entropy(counts):
        return -sum(c / n * math.log(c / n) for c in counts.values())

    lg = math.lgamma
    emi = 0.0  # expected MI under the hypergeometric model of random labelings
    for ai in ca.values():
        for bj in cb.values():
            for nij in range(max(1, ai + bj - n), min(ai, bj) + 1):
                log_p = (
                    lg(ai + 1) + lg(bj + 1) + lg(n - ai + 1) + lg(n - bj + 1)
                    - lg(n + 1) - lg(nij + 1) - lg(ai - nij + 1) - lg(bj - nij + 1)
                    - lg(n - ai - bj + nij + 1)
                )  # fmt: skip
                emi += nij / n * math.log(n * nij / (ai * bj)) * math.exp(log_p)
    denom = 0.5 * (entropy(ca) + entropy(cb)) - emi
    return (mi - emi) / denom if denom > 0 else 1.0


def test_ami_reference_values():
    assert adjusted_mutual_information([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)
    # a labeling independent of the other scores about zero
    a = [0, 1] * 50
    b = [0] * 50 + [1] * 50
    assert abs(adjusted_mutual_information(a, b)) < 0.05


def seqs_data(sequences: list[list[int]], n_items: int) -> SequenceData:
    return SequenceData(
        users=[f"u{i}" for i in range(len(sequences))],
        items=[str(i) for i in range(1, n_items + 1)],
        sequences=sequences,
    )


# --- the protocol ---------------------------------------------------------------


def test_leave_one_out_split_by_hand(caplog):
    data = seqs_data([[1, 2, 3, 4, 5], [6, 7, 8], [9, 10]], n_items=10)
    with caplog.at_level("INFO", logger="elcrec.offline"):
        split = LeaveOneOut.from_sequences(data, block_size=3)
    # user 0 trains on [1,2] -> [2,3]; user 1 is too short to train; user 2 has
    # fewer than 3 items: out of evaluation, trains on its whole sequence
    assert split.train_inputs.tolist() == [[0, 1, 2], [0, 0, 9]]
    assert split.train_targets.tolist() == [[0, 2, 3], [0, 0, 10]]
    assert split.valid.inputs.tolist() == [[1, 2, 3], [0, 0, 6]]
    assert split.valid.targets.tolist() == [4, 7]
    assert split.test.inputs.tolist() == [[2, 3, 4], [0, 6, 7]]
    assert split.test.targets.tolist() == [5, 8]
    # seen items are the whole input history, not only the last block_size
    assert split.test.seen.tolist() == [[1, 2, 3, 4], [0, 0, 6, 7]]
    assert split.n_short == 1
    assert "kept out of evaluation" in caplog.text and "n=1" in caplog.text


def test_split_rejects_data_without_evaluable_users():
    with pytest.raises(DataError, match="3 items"):
        LeaveOneOut.from_sequences(seqs_data([[1, 2]], 2), block_size=4)


def test_most_popular_by_hand():
    # counts in the test inputs s[:-1]: item 1 x3, item 2 x2, item 3 x1
    data = seqs_data([[1, 2, 3, 4], [1, 2, 5, 3], [1, 6, 7, 2]], n_items=7)
    split = LeaveOneOut.from_sequences(data, block_size=4)
    m = most_popular(split, "test")
    # user 0: target 4 (count 0); unseen items by count: 4,5,6,7 all 1 or 0...
    ranks = []
    counts = split.counts_test
    for inputs, target in zip(
        [[1, 2, 3], [1, 2, 5], [1, 6, 7]], [4, 3, 2], strict=True
    ):
        unseen = [i for i in range(1, 8) if i not in inputs]
        order = sorted(unseen, key=lambda i: (-counts[i].item(), i))
        ranks.append(order.index(target) if target in order else 99)
    assert m["hr@5"] == pytest.approx(sum(r < 5 for r in ranks) / 3)
    assert m["ndcg@5"] == pytest.approx(
        sum(1 / math.log2(r + 2) for r in ranks if r < 5) / 3
    )


# --- the trainer ------------------------------------------------------------------


@pytest.fixture
def small_split():
    syn = SyntheticClickstream(
        n_users=120, n_items=40, n_intents=3, events_per_user=8, seed=1
    )
    data = syn.sequence_data()
    return LeaveOneOut.from_sequences(data, TINY.block_size), data.items


def test_resume_gives_identical_next_step_losses(small_split, tmp_path):
    split, items = small_split
    tcfg = TrainConfig(epochs=2, batch_size=32, seed=3)
    trainer = OfflineTrainer(TINY, tcfg, split, items, tmp_path)
    trainer.fit()
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    x, y = next(trainer.batches())
    expected = trainer.step(x, y)

    # Note: dropout draws from torch's global generator, which resume() restores;
    # so the resumed trainer is built after the original took its step.
    resumed = OfflineTrainer.resume(tmp_path / "last.pt", split, tmp_path)
    assert resumed.epoch == trainer.epoch == 2
    assert resumed.step_count == trainer.step_count - 1
    x2, y2 = next(resumed.batches())
    assert torch.equal(x, x2) and torch.equal(y, y2)
    got = resumed.step(x2, y2)
    assert got == expected  # bit-identical: same weights, optimizer, random state
    assert torch.equal(
        resumed.model.tok_emb.weight, trainer.model.tok_emb.weight
    )  # and the same parameters after the step


def test_checkpoint_holds_model_optimizer_config_vocabulary_epoch(
    small_split, tmp_path
):
    split, items = small_split
    trainer = OfflineTrainer(
        TINY, TrainConfig(epochs=1, batch_size=64), split, items, tmp_path
    )
    trainer.fit()
    ckpt = load_checkpoint(tmp_path)  # a folder means its best.pt
    assert set(ckpt) >= {"model", "optimizer", "model_config", "items", "epoch"}
    assert ckpt["items"] == list(items) and ckpt["epoch"] == 1
    assert ELCRecConfig.from_dict(ckpt["model_config"]).n_items == len(items)


def test_training_is_deterministic_under_a_seed(small_split):
    split, items = small_split
    runs = []
    for _ in range(2):
        trainer = OfflineTrainer(
            TINY, TrainConfig(epochs=1, batch_size=64, seed=7), split, items
        )
        runs.append(trainer.train_epoch())
    assert runs[0] == runs[1]


def test_early_stopping_after_patience(small_split):
    split, items = small_split
    trainer = OfflineTrainer(
        TINY, TrainConfig(epochs=50, batch_size=64, lr=1e-9, patience=2), split, items
    )
    summary = trainer.fit()
    # with a learning rate of 1e-9 nothing improves after the first epoch
    assert summary["epochs"] < 50
    assert trainer.bad_epochs == 2
    assert summary["epochs"] == trainer.best_epoch + 2


def test_non_finite_loss_stops_training_with_a_clear_error(small_split):
    from elcrec.offline import TrainingError

    split, items = small_split
    trainer = OfflineTrainer(TINY, TrainConfig(epochs=1, batch_size=64), split, items)
    trainer.init_centers()
    with torch.no_grad():
        trainer.model.tok_emb.weight[1:] = float("nan")
    with pytest.raises(TrainingError, match="non-finite loss at epoch 1"):
        trainer.train_epoch()


def test_train_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=-1.0)


# --- planted intents -----------------------------------------------------------------


def test_elcrec_beats_most_popular_and_recovers_planted_intents():
    syn = SyntheticClickstream(
        n_users=500, n_items=80, n_intents=4, events_per_user=15, seed=3
    )
    data = syn.sequence_data()
    # Note: with the paper's dot-product sequence contrast, or with lambda = 10,
    # this small data set learns very slowly (see bench/README.md); the cosine
    # contrast and lambda = 0.1 learn it in a few epochs.
    cfg = ELCRecConfig(
        n_embd=32,
        n_head=2,
        n_layer=1,
        block_size=15,
        n_intents=4,
        dropout=0.1,
        attn_dropout=0.1,
        clu_weight=0.1,
        seqcl_similarity="cosine",
    )
    split = LeaveOneOut.from_sequences(data, cfg.block_size)
    tcfg = TrainConfig(epochs=3, batch_size=32, lr=5e-3, seed=0)
    trainer = OfflineTrainer(cfg, tcfg, split, data.items)
    for _ in range(3):
        trainer.train_epoch()

    elcrec = trainer.evaluate("test")
    popular = most_popular(split, "test")
    assert elcrec["ndcg@10"] > 2 * popular["ndcg@10"], (elcrec, popular)

    trainer.model.eval()
    k, _ = trainer.model.assign(split.test.inputs)
    planted = [syn.user_intent[u] for u in data.users]  # every user is evaluated
    assert adjusted_mutual_information(k.tolist(), planted) > 0.6


# --- the command line ----------------------------------------------------------------


@pytest.fixture
def seq_file(tmp_path):
    syn = SyntheticClickstream(
        n_users=60, n_items=30, n_intents=3, events_per_user=7, seed=2
    )
    data = syn.sequence_data()
    path = tmp_path / "tiny.txt"
    path.write_text(
        "".join(
            f"{u} {' '.join(data.items[i - 1][1:] for i in s)}\n"
            for u, s in zip(data.users, data.sequences, strict=True)
        )
    )
    return path


def test_cli_train_then_evaluate_print_one_json_line(seq_file, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", "--data", str(seq_file), "--epochs", "2", "--out", str(out)]
    sets = ["--set", "n_embd=16", "--set", "n_intents=3", "--set", "block_size=8"]
    assert cli_main(args + sets + ["--no-progress"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"}
    assert keys <= set(trained) and trained["split"] == "test"

    assert cli_main(["evaluate", "--model", str(out), "--data", str(seq_file)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip())
    assert evaluated["split"] == "test"
    for k in keys:  # the same best checkpoint, the same data: the same figures
        assert evaluated[k] == pytest.approx(trained[k])


def test_cli_most_popular_baseline(seq_file, capsys):
    assert cli_main(["train", "--data", str(seq_file), "--model", "most-popular"]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["split"] == "test" and 0 <= result["hr@20"] <= 1


def test_cli_errors_are_one_line(seq_file, tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert cli_main(["evaluate", "--model", str(missing), "--data", str(seq_file)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "best.pt" in err and "Traceback" not in err

    args = ["train", "--data", str(seq_file), "--set", "pooling=max"]
    assert cli_main(args) == 2
    assert "pooling" in capsys.readouterr().err

    args = ["train", "--data", str(seq_file), "--out", str(missing), "--resume"]
    assert cli_main(args) == 2
    assert "no checkpoint" in capsys.readouterr().err and not missing.exists()
