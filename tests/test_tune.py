"""`dpbench tune`: the proxy task is cut from public data only, every method gets the same trial budget, and the
chosen setting is the best-scoring trial."""
import json

import pytest
import torch
from click.testing import CliRunner

from dpbench.builtins.pair_digits_mnist import load_digits_mnist
from dpbench.cli import main
from dpbench.data.types import ImageSet
from dpbench.tune import protocol
from dpbench.tune.protocol import Trial, TuneResult, _neighbours
from dpbench.tune.proxy import ProxySplit, proxy_pair_data, scaled_batch_size, shift_domain, stratified_parts


def _public(n_per_class=20, classes=10):
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = (torch.rand(len(labels), 1, 8, 8) * 255).to(torch.uint8)
    return ImageSet(images, labels)


def test_proxy_parts_are_disjoint_stratified_and_cover_the_public_split():
    public = _public()
    parts = stratified_parts(public.labels, (0.5, 0.3), seed=1)
    joined = torch.cat(parts)
    assert len(joined) == len(public) and len(set(joined.tolist())) == len(public)
    for part, share in zip(parts, (0.5, 0.3, 0.2)):
        counts = torch.bincount(public.labels[part], minlength=10)
        assert torch.all(counts == round(share * 20)), counts


def test_proxy_pair_data_holds_public_images_only_and_shifts_both_proxy_parts():
    public = _public()
    split = ProxySplit()
    data = proxy_pair_data(public, split, {"source": "x", "public_note": 1})
    backbone, private, _ = stratified_parts(public.labels, (split.backbone_fraction, split.private_fraction), split.seed)
    assert torch.equal(data.public_train.images, public.images[backbone])
    assert torch.equal(data.private_train.images, shift_domain(public.images[private], split))
    assert data.info["proxy"]["sizes"] == [len(data.public_train), len(data.private_train), len(data.private_test)]
    assert "source" not in data.info and data.info["public_note"] == 1


def test_shift_thickens_and_sharpens():
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 4, 4] = 200
    image[0, 0, 4, 5] = 60
    out = shift_domain(image, ProxySplit())
    assert int((out > 127).sum()) > int((image > 127).sum())  # the stroke got wider
    assert int(out.max()) > 240 > 200 and int(out[0, 0, 0, 0]) == 0  # and crisper, background stays black


@pytest.mark.parametrize("batch,n_proxy,n_private,expected", [(256, 540, 4000, 35), (1, 10, 4000, 1), (64, 64, 64, 64)])
def test_sample_rate_is_scaled_to_the_proxy(batch, n_proxy, n_private, expected):
    assert scaled_batch_size(batch, n_proxy, n_private) == expected


def test_search_keeps_compute_and_the_trial_budget():
    base = {"lr": 1e-3, "steps": 100, "batch_size": 256, "guidance_scale": 2.0, "max_grad_norm": 1.0}
    first = _neighbours(base, {}, 1)
    assert first[0] == {} and [c["max_grad_norm"] for c in first[1:]] == [0.1, 0.01]
    second = _neighbours(base, {"max_grad_norm": 0.01}, 2)
    assert [c["lr"] for c in second] == [2.5e-4, 4e-3] and all(c["max_grad_norm"] == 0.01 for c in second)
    third = _neighbours(base, {"max_grad_norm": 0.01, "lr": 4e-3}, 3)
    assert all(c["steps"] * c["batch_size"] <= 100 * 256 and c["lr"] == 4e-3 and c["max_grad_norm"] == 0.01
               for c in third)
    fourth = _neighbours(base, {"lr": 4e-3, "steps": 200, "batch_size": 128}, 4)
    assert [c["guidance_scale"] for c in fourth] == [1.0, 4.0] and all(c["steps"] == 200 for c in fourth)
    classifier = {"lr": 0.5, "steps": 150, "batch_size": 512, "max_grad_norm": 1.0}
    assert [c["lr"] for c in _neighbours(classifier, {"lr": 2.0}, 4)] == [1.0, 4.0]
    total = len(first) + len(second) + len(third) + len(fourth)
    assert total == protocol.TRIAL_BUDGET == len(first) + len(second) + len(third) + len(_neighbours(classifier, {}, 4))


def test_best_is_the_highest_score_and_the_earliest_of_ties():
    result = TuneResult("m", 10.0, {}, [Trial({}, score=0.5), Trial({"lr": 1}, score=0.7),
                                        Trial({"lr": 2}, score=0.7), Trial({"lr": 3}, status="failed")])
    assert result.best().overrides == {"lr": 1}
    with pytest.raises(RuntimeError, match="every tuning trial"):
        TuneResult("m", 10.0, {}, [Trial({}, status="failed", error="boom")]).best()


@pytest.mark.slow  # 2 methods x the whole trial budget of real smoke runs
def test_tune_smoke_end_to_end(tmp_path, shared_cache, monkeypatch):
    # 5 synthetic images per class per generator trial instead of 50: this test is about the protocol's plumbing
    # (trial budget, fits, proxy data, sample rate), not about the scores, so `tune`'s one fixed count is cut here
    monkeypatch.setattr(protocol, "TRIAL_SAMPLES_PER_CLASS", 5)
    out = tmp_path / "tune"
    result = CliRunner().invoke(main, ["tune", "--pair", "digits-mnist", "--method", "dp-loda", "--method", "dp-sgd",
                                       "--preset", "smoke", "--eps", "10", "--out", str(out), "--classifier-fits", "2",
                                       "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)[0]
    assert json.loads((out / "tune-digits-mnist-smoke-eps10.json").read_text()) == document
    assert document["protocol"]["classifier_fits"] == 2
    for name in ("dp-loda", "dp-sgd"):
        entry = document["methods"][name]
        assert len(entry["trials"]) == protocol.TRIAL_BUDGET
        scores = [t["score"] for t in entry["trials"] if t["score"] is not None]
        assert entry["chosen_score"] == max(scores)
    # a generator's trial is scored by the mean of its classifier fits, the first being the record's own
    for trial in document["methods"]["dp-loda"]["trials"]:
        record = json.loads(open(out / trial["record"]).read())
        assert len(trial["fits"]) == 2 and trial["fits"][0] == record["metrics"]["accuracy"]["value"]
        assert record["method"]["settings"]["samples_per_class"] == 5  # the protocol's count reached the run
        assert trial["score"] == pytest.approx(sum(trial["fits"]) / 2)
    assert all(t["fits"] is None for t in document["methods"]["dp-sgd"]["trials"])  # no synthetic set to refit on
    # every trial trained on the proxy-private part of the public split, at the real split's sample rate
    data = load_digits_mnist()
    split = ProxySplit()
    proxy_private = stratified_parts(data.public_train.labels, (split.backbone_fraction, split.private_fraction),
                                     split.seed)[1]
    trials = [t for entry in document["methods"].values() for t in entry["trials"]]
    assert len(trials) == 2 * protocol.TRIAL_BUDGET
    for entry in document["methods"].values():
        for trial in entry["trials"]:
            record = json.loads(open(out / trial["record"]).read())
            assert record["pair"]["n_private_train"] == len(proxy_private) != len(data.private_train)
            assert record["privacy"]["n_private"] == len(proxy_private)
            real_batch = trial["overrides"].get("batch_size", entry["preset_settings"]["batch_size"])
            proxy_batch = scaled_batch_size(real_batch, len(proxy_private), len(data.private_train))
            assert record["method"]["settings"]["batch_size"] == trial["proxy_batch_size"] == proxy_batch
            assert record["privacy"]["stages"][0]["sample_rate"] == pytest.approx(proxy_batch / len(proxy_private))


def test_tune_rejects_an_unknown_method(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--pair", "digits-mnist", "--method", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nope" in result.output
