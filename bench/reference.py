"""PyTorch reference for `just bench`: the workloads of `haltlab bench`, written as a
researcher would write them in PyTorch, with the sizes, initialisation scheme, optimiser and
thread count that haltlab's run recorded in its JSON file.

    python bench/reference.py act   RESULT_DIR   # reads RESULT_DIR/haltlab-act.json
    python bench/reference.py exits RESULT_DIR   # reads RESULT_DIR/haltlab-exits.json

Each call writes RESULT_DIR/pytorch-<workload>.json. Run each workload in its own process,
so that the peak resident memory it reports is that workload's. See bench/README.md for the
install.
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / (1024.0 * 1024.0)


def set_threads(threads):
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


# ---------------------------------------------------------------------------------------------
# ACT on parity


class PonderGru(nn.Module):
    """GRU cell applied repeatedly to one input with a first-step flag, as haltlab's
    PonderNetwork: input projections computed once per batch, PyTorch's GRU gate layout
    (reset gate applied after the hidden projection), a halting unit and an output layer.
    nn.Linear's default initialisation draws weights and biases from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)), the scheme of Burn's LinearConfig default."""

    def __init__(self, length, hidden, classes, halting_bias):
        super().__init__()
        self.hidden = hidden
        self.input_gates = nn.Linear(length + 1, 3 * hidden)
        self.hidden_gates = nn.Linear(hidden, 3 * hidden)
        self.halting = nn.Linear(hidden, 1)
        self.output = nn.Linear(hidden, classes)
        with torch.no_grad():
            self.halting.bias.fill_(halting_bias)

    def forward_act(self, inputs, max_steps, epsilon):
        batch = inputs.shape[0]
        flag_on = torch.ones(batch, 1)
        flag_off = torch.zeros(batch, 1)
        first = self.input_gates(torch.cat([flag_on, inputs], 1))
        later = self.input_gates(torch.cat([flag_off, inputs], 1))
        state = torch.zeros(batch, self.hidden)
        h = self.hidden
        halting_values = []
        step_logits = []
        cumulative = torch.zeros(batch)
        for step in range(1, max_steps + 1):
            projected = first if step == 1 else later
            recurrent = self.hidden_gates(state)
            gates = torch.sigmoid(projected[:, : 2 * h] + recurrent[:, : 2 * h])
            reset, update = gates[:, :h], gates[:, h:]
            candidate = torch.tanh(projected[:, 2 * h :] + reset * recurrent[:, 2 * h :])
            state = candidate + update * (state - candidate)
            step_logits.append(self.output(state))
            halting = torch.sigmoid(self.halting(state).squeeze(1))
            halting_values.append(halting)
            if step == max_steps:
                break
            cumulative = cumulative + halting.detach()
            if bool((cumulative >= 1.0 - epsilon).all()):
                break
        return act_accumulate(torch.stack(halting_values, 1), torch.stack(step_logits, 1), epsilon)


def act_accumulate(halting, step_outputs, epsilon):
    """Graves (2016) ACT weights (inclusive threshold, last computed step forced), the
    weighted sum of step outputs and the ponder cost N + R with N held constant."""
    batch, steps = halting.shape
    reached = (halting.cumsum(1) >= 1.0 - epsilon).float()
    reached[:, steps - 1] = 1.0
    reached_count = reached.cumsum(1)
    before = reached_count < 0.5
    at_halt = (reached_count == 1.0) & (reached > 0.5)
    halting_before = halting.masked_fill(~before, 0.0)
    remainder = 1.0 - halting_before.sum(1, keepdim=True)
    weights = torch.where(at_halt, remainder.expand(batch, steps), halting_before)
    halting_step = before.float().sum(1, keepdim=True) + 1.0
    ponder_cost = (halting_step + remainder).squeeze(1)
    active = before | at_halt
    outputs = step_outputs.masked_fill(~active.unsqueeze(2), 0.0)
    logits = (outputs * weights.unsqueeze(2)).sum(1)
    return logits, ponder_cost, halting_step.squeeze(1).long()


def parity_batch(rng, batch, length, low, high):
    """Vectors with k ~ U{low..high} entries of ±1 at random positions; target = parity of
    the number of +1 entries."""
    inputs = np.zeros((batch, length), dtype=np.float32)
    targets = np.zeros(batch, dtype=np.int64)
    for row in range(batch):
        count = rng.integers(low, high + 1)
        positions = rng.choice(length, size=count, replace=False)
        signs = rng.integers(0, 2, size=count)
        inputs[row, positions] = np.where(signs == 1, 1.0, -1.0)
        targets[row] = int(signs.sum()) % 2
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def bench_act(spec):
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    model = PonderGru(spec["length"], spec["hidden_size"], 2, spec["halting_bias"])
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["learning_rate"])
    low, high = spec["nonzeros"]
    total = spec["warmup_steps"] + spec["timed_steps"]
    marks = []
    rss = []
    halting_steps = []
    correct = 0
    for step in range(1, total + 1):
        inputs, targets = parity_batch(rng, spec["batch_size"], spec["length"], low, high)
        logits, ponder_cost, halting_step = model.forward_act(
            inputs, spec["max_steps"], spec["epsilon"]
        )
        task = nn.functional.cross_entropy(logits, targets)
        loss = task + spec["ponder_weight"] * ponder_cost.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # What a training script reads back each step: the loss, accuracy and halting steps.
        loss_value = loss.item()
        if not np.isfinite(loss_value):
            raise RuntimeError(f"training loss is {loss_value} at step {step}")
        correct += int((logits.detach().argmax(1) == targets).sum())
        halting_steps.append(halting_step.tolist())
        marks.append(time.perf_counter())
        if step in spec["rss_steps"]:
            rss.append({"step": step, "rss_mib": current_rss_mib()})
    return timed_result(spec, marks, rss, halting_steps)


def timed_result(spec, marks, rss, halting_steps):
    """Return the keys of haltlab's TrainingThroughput. The timed span runs from the end of
    the last warm-up step to the end of the last step. The mean halting step covers every
    sample of the run, as haltlab's per-epoch value does for its one-epoch benchmark."""
    warmup = spec["warmup_steps"]
    seconds = marks[-1] - marks[warmup - 1]
    timed = len(marks) - warmup
    step_seconds = np.sort(np.diff(np.array(marks[warmup - 1 :])))
    return {
        "timed_steps": timed,
        "seconds": seconds,
        "samples_per_second": timed * spec["batch_size"] / seconds,
        "median_step_ms": float(step_seconds[len(step_seconds) // 2] * 1e3),
        "mean_halting_step": float(np.mean(np.concatenate(halting_steps))),
        "rss": rss,
        "peak_rss_mib": peak_rss_mib(),
    }


# ---------------------------------------------------------------------------------------------
# Early-exit MLP inference


def load_f32(path, shape):
    values = np.fromfile(path, dtype="<f4")
    expected = int(np.prod(shape))
    if values.size != expected:
        raise SystemExit(f"{path}: {values.size} values, expected {expected} for shape {shape}")
    return torch.from_numpy(values.reshape(shape).copy())


class ExitMlp(nn.Module):
    """haltlab's ExitMlp: hidden layer l (ReLU) feeds layer l + 1 and exit head l."""

    def __init__(self, tensors):
        super().__init__()
        self.layers = nn.ModuleList()
        self.heads = nn.ModuleList()
        for layer, head in zip(tensors["layers"], tensors["heads"]):
            self.layers.append(linear_from(layer))
            self.heads.append(linear_from(head))

    @torch.no_grad()
    def full(self, inputs):
        hidden = inputs
        for layer in self.layers:
            hidden = torch.relu(layer(hidden))
        return self.heads[-1](hidden).argmax(1)

    @torch.no_grad()
    def exits(self, inputs, threshold):
        """Run hard confidence exits with batch compaction. A row leaves at the first head
        whose top softmax probability is at least `threshold`, inclusive as in haltlab's
        ConfidenceRule, and the last head predicts for the rest."""
        batch = inputs.shape[0]
        predictions = torch.empty(batch, dtype=torch.long)
        exit_layer = torch.empty(batch, dtype=torch.long)
        running = torch.arange(batch)
        hidden = inputs
        depth = len(self.layers)
        for stage in range(depth):
            hidden = torch.relu(self.layers[stage](hidden))
            logits = self.heads[stage](hidden)
            confidence, predicted = torch.softmax(logits, 1).max(1)
            if stage + 1 == depth:
                leaving = torch.ones_like(predicted, dtype=torch.bool)
            else:
                leaving = confidence >= threshold
            predictions[running[leaving]] = predicted[leaving]
            exit_layer[running[leaving]] = stage + 1
            staying = ~leaving
            if not bool(staying.any()):
                break
            if not bool(leaving.any()):
                continue
            running = running[staying]
            hidden = hidden[staying]
        return predictions, exit_layer


def linear_from(entry):
    weight = entry["weight"]  # [out, in] after transposing haltlab's [in, out]
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(entry["bias"])
    return linear


def load_exit_model(spec, directory):
    tensors = {"layers": [], "heads": []}
    blob = np.fromfile(directory / spec["weights_file"], dtype="<f4")
    for entry in spec["tensors"]:
        start, count = entry["offset"], int(np.prod(entry["shape"]))
        values = torch.from_numpy(blob[start : start + count].reshape(entry["shape"]).copy())
        kind, index, part = entry["name"].split(".")
        index = int(index)
        group = tensors[kind]
        while len(group) <= index:
            group.append({})
        # haltlab stores Linear weights as [in, out]; nn.Linear wants [out, in].
        group[index][part] = values.t().contiguous() if part == "weight" else values
    return ExitMlp(tensors)


def time_calls(calls, function):
    times = []
    for argument in calls:
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return times


def latency(times):
    """Nearest-rank percentiles in milliseconds, the keys of haltlab's LatencySummary."""
    values = np.sort(np.array(times)) * 1e3

    def rank(q):
        return float(values[max(0, int(np.ceil(q * len(values))) - 1)])

    return {
        "count": len(values),
        "mean_ms": float(values.mean()),
        "p50_ms": rank(0.5),
        "p90_ms": rank(0.9),
        "p99_ms": rank(0.99),
        "max_ms": float(values[-1]),
    }


def bench_exits(spec, directory):
    model = load_exit_model(spec, directory)
    images = load_f32(directory / spec["inputs_file"], [spec["samples"], spec["features"]])
    threshold = spec["threshold"]
    expected_layers = np.array(spec["exit_layer"])
    result = {"batches": {}}
    if spec["rule"] != "confidence":
        raise SystemExit(f"the reference implements confidence exits only, not {spec['rule']}")
    for batch_size in spec["batch_sizes"]:
        rounds = spec["rounds"]
        batches = [
            images[start : start + batch_size]
            for start in range(0, spec["samples"] - batch_size + 1, batch_size)
        ]
        # Warm-up round, as haltlab's: the first calls allocate buffers.
        for inputs in batches[: spec["warmup_calls"]]:
            model.exits(inputs, threshold)
            model.full(inputs)
        exit_times, full_times, layers = [], [], []
        for round_index in range(rounds):
            for inputs in batches:
                started = time.perf_counter()
                _, exit_layer = model.exits(inputs, threshold)
                exit_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                model.full(inputs)
                full_times.append(time.perf_counter() - started)
                if round_index == 0:
                    layers.append(exit_layer.numpy())
        layers = np.concatenate(layers)
        agree = float(np.mean(layers == expected_layers[: layers.size]))
        samples = rounds * len(batches) * batch_size
        result["batches"][str(batch_size)] = {
            "exits": latency(exit_times),
            "full": latency(full_times),
            "exit_samples_per_second": samples / sum(exit_times),
            "full_samples_per_second": samples / sum(full_times),
            "mean_exit_layer": float(layers.mean()),
            "exit_layer_agreement": agree,
        }
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("act", "exits"):
        raise SystemExit("usage: python bench/reference.py act|exits RESULT_DIR")
    workload, directory = sys.argv[1], Path(sys.argv[2])
    spec_path = directory / f"haltlab-{workload}.json"
    recipe = "experiments/bench_act.toml" if workload == "act" else "experiments/mnist_exits.toml --data MNIST_FILE"
    if not spec_path.exists():
        raise SystemExit(
            f"error: {spec_path} not found: run `haltlab bench {workload} {recipe} --out {directory}` first"
        )
    try:
        spec = json.loads(spec_path.read_text())["spec"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f"error: {spec_path} is not a haltlab benchmark record ({error!r}); rerun `haltlab bench {workload}`"
        )
    set_threads(spec["threads"])
    try:
        result = bench_act(spec) if workload == "act" else bench_exits(spec, directory)
    except (OSError, KeyError, ValueError) as error:
        raise SystemExit(f"error: the {workload} workload failed: {error!r}")
    result.update(
        {
            "implementation": "pytorch",
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "backend": None,
            "workload": workload,
            # The report checks that both records describe the same workload.
            "spec": spec,
        }
    )
    out = directory / f"pytorch-{workload}.json"
    temporary = out.with_name(f".{out.name}.tmp")
    try:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
        temporary.replace(out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SystemExit(f"error: failed to write {out}: {error}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
