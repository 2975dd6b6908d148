import pytest
import torch

from xlcl.classifier import build_classifier, store_frozen_linears_in_bf16, trainable_parameters
from xlcl.config import LoraSettings, TrainConfig
from xlcl.evaluate.spans import SpanCounts
from xlcl.methods import method
from xlcl.train import TrainState, optimizer_for


def train(model, en_us, epochs, patience, **kwargs):
    config = TrainConfig(epochs=epochs, patience=patience, learning_rate=1e-2, batch_size=4)
    return en_us.train_step(model, config, **kwargs)


def test_early_stopping_restores_the_best_epochs_weights(en_us, monkeypatch):
    model_dir, labels, *_ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), seed=0)
    dev_f1 = iter([0.2, 0.5, 0.3, 0.4, 0.9])
    weights_at_epoch = []

    def scripted_dev_score(model, *args):
        weights_at_epoch.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return SpanCounts(10, 10, round(next(dev_f1) * 10))

    monkeypatch.setattr("xlcl.tasks.massive_slots.score_splits", scripted_dev_score)
    result = train(model, en_us, epochs=10, patience=2)
    # 2 epochs without gain after the best one: stop at epoch 4
    assert [r.dev_score for r in result.epochs] == pytest.approx([0.2, 0.5, 0.3, 0.4])
    assert result.best_epoch == 2
    assert result.best_dev_score == pytest.approx(0.5)
    best = weights_at_epoch[1]
    assert any(not torch.equal(best[n], p) for n, p in weights_at_epoch[-1].items())
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, best[name]), name


def test_lora_training_leaves_the_base_frozen(en_us):
    model_dir, labels, *_ = en_us
    model = build_classifier(str(model_dir), labels, method("shared-lora", 4), LoraSettings(), 0)
    trainable = {name for name, _ in trainable_parameters(model)}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in trainable}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
    result = train(model, en_us, epochs=2, patience=2)
    assert len(result.epochs) == 2
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)


def test_a_non_finite_gradient_stops_the_step(en_us):
    model_dir, labels, *_ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        train(model, en_us, epochs=1, patience=1)


def test_the_head_can_train_at_its_own_rate_and_norms_skip_weight_decay(en_us):
    model_dir, labels, *_ = en_us
    model = build_classifier(str(model_dir), labels, method("vanilla"), LoraSettings(), 0)
    config = TrainConfig(
        epochs=1, patience=1, learning_rate=1e-4, head_learning_rate=3e-3, weight_decay=0.01
    )
    optimizer, _ = optimizer_for(trainable_parameters(model), config, total_steps=10)
    names = {id(p): n for n, p in model.named_parameters()}
    settings = {
        names[id(p)]: (group["lr"], group["weight_decay"])
        for group in optimizer.param_groups
        for p in group["params"]
    }
    assert settings["classifier.weight"] == (3e-3, 0.01)
    assert settings["classifier.bias"] == (3e-3, 0.0)
    assert settings["roberta.encoder.layer.0.attention.self.query.weight"] == (1e-4, 0.01)
    assert settings["roberta.encoder.layer.0.attention.output.LayerNorm.weight"] == (1e-4, 0.0)
    assert len(settings) == sum(1 for _ in model.parameters())


def test_a_train_state_keeps_the_gpu_generators_through_a_weights_only_load(tmp_path):
    gpu_states = [torch.arange(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    state = TrainState(epoch=2, batches_done=3, torch_rng=torch.get_rng_state())
    state.cuda_rng = gpu_states  # one generator per GPU, as torch.cuda.get_rng_state_all()
    torch.save(state.to_dict(), tmp_path / "train_state.pt")
    loaded = TrainState.from_dict(torch.load(tmp_path / "train_state.pt", weights_only=True))
    assert loaded.cuda_rng is not None
    assert [s.tolist() for s in loaded.cuda_rng] == [s.tolist() for s in gpu_states]
    older = state.to_dict()
    del older["cuda_rng"]  # a checkpoint written before xlcl saved them
    assert TrainState.from_dict(older).cuda_rng is None


def test_a_lora_base_stored_in_bf16_trains_bit_for_bit_as_under_autocast(en_us):
    model_dir, labels, *_ = en_us
    config = TrainConfig(epochs=2, patience=2, learning_rate=1e-2, batch_size=4, precision="bf16")
    results, weights = [], []
    for stored_in_bf16 in (False, True):
        model = build_classifier(
            str(model_dir), labels, method("shared-lora", 4), LoraSettings(), 0
        )
        if stored_in_bf16:
            # 2 layers x (query, key, value, attention output, intermediate, output)
            assert store_frozen_linears_in_bf16(model) == 2 * 6
            dtypes = {p.dtype for n, p in model.named_parameters() if "base_layer" in n}
            assert dtypes == {torch.bfloat16}
            assert {p.dtype for _, p in trainable_parameters(model)} == {torch.float32}
            assert model.base_model.model.roberta.embeddings.word_embeddings.weight.dtype == (
                torch.float32
            )
        results.append(en_us.train_step(model, config))
        weights.append({n: p.detach().clone() for n, p in trainable_parameters(model)})
    assert [r.train_loss for r in results[1].epochs] == [r.train_loss for r in results[0].epochs]
    assert [r.dev_score for r in results[1].epochs] == [r.dev_score for r in results[0].epochs]
    for name, weight in weights[0].items():
        assert torch.equal(weights[1][name], weight), name
