"""The learner update of benches/learner_step.rs in PyTorch, on CPU: MLP
64x64 (ReLU) with policy and value heads, V-trace (rho_bar = c_bar = 1,
lambda = 1), IMPALA loss with sums (baseline_cost 0.5, entropy_cost 0.01),
global-norm clipping at 40, RMSprop(lr 6e-4, alpha 0.99, eps 0.01), on a
batch of 32 unrolls x T = 20 (obs 4, 2 actions). With the third argument
`minatar`: the MinAtar network instead (conv 16@3x3 stride 1 on [10, 10, 4]
HWC observations turned to CHW, ReLU, FC 128, ReLU; 3 actions), on 0/1
observations. With `nature`: the Nature network (TorchBeast's AtariNet
torso: conv 32@8x8/4, 64@4x4/2, 64@3x3/1, FC 512, inputs / 255) on
[84, 84, 4] frames of 0..255, 6 actions, and a batch of 8 unrolls x T = 5
(as benches/learner_step.rs's nature_b8_t5). Prints one JSON object.
Arguments: seconds to measure, threads (0: PyTorch's default), net (mlp,
minatar or nature).
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

NET = sys.argv[3] if len(sys.argv) > 3 else "mlp"
T, B = (5, 8) if NET == "nature" else (20, 32)
OBS, A = {"minatar": (400, 3), "nature": (84 * 84 * 4, 6)}.get(NET, (4, 2))


class NatureNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = torch.nn.Conv2d(4, 32, 8, stride=4)
        self.conv1 = torch.nn.Conv2d(32, 64, 4, stride=2)
        self.conv2 = torch.nn.Conv2d(64, 64, 3, stride=1)
        self.fc = torch.nn.Linear(64 * 7 * 7, 512)
        self.policy = torch.nn.Linear(512, A)
        self.value = torch.nn.Linear(512, 1)

    def forward(self, x):
        x = x.reshape(-1, 84, 84, 4).permute(0, 3, 1, 2) / 255.0
        x = F.relu(self.conv2(F.relu(self.conv1(F.relu(self.conv0(x))))))
        h = F.relu(self.fc(x.flatten(1)))
        return self.policy(h), self.value(h).squeeze(-1)


class MinAtarNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 16, 3)
        self.fc = torch.nn.Linear(16 * 8 * 8, 128)
        self.policy = torch.nn.Linear(128, A)
        self.value = torch.nn.Linear(128, 1)

    def forward(self, x):
        x = x.reshape(-1, 10, 10, 4).permute(0, 3, 1, 2)
        h = F.relu(self.fc(F.relu(self.conv(x)).flatten(1)))
        return self.policy(h), self.value(h).squeeze(-1)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.torso = torch.nn.Sequential(
            torch.nn.Linear(OBS, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU()
        )
        self.policy = torch.nn.Linear(64, A)
        self.value = torch.nn.Linear(64, 1)

    def forward(self, x):
        h = self.torso(x)
        return self.policy(h), self.value(h).squeeze(-1)


def vtrace(log_rhos, discounts, rewards, values, bootstrap):
    with torch.no_grad():
        rhos = torch.exp(log_rhos)
        clipped = torch.clamp(rhos, max=1.0)
        cs = torch.clamp(rhos, max=1.0)
        values_tp1 = torch.cat([values[1:], bootstrap.unsqueeze(0)], 0)
        deltas = clipped * (rewards + discounts * values_tp1 - values)
        acc = torch.zeros_like(bootstrap)
        out = []
        for t in reversed(range(T)):
            acc = deltas[t] + discounts[t] * cs[t] * acc
            out.append(acc)
        vs = torch.stack(out[::-1]) + values
        vs_tp1 = torch.cat([vs[1:], bootstrap.unsqueeze(0)], 0)
        pg_adv = clipped * (rewards + discounts * vs_tp1 - values)
    return vs, pg_adv


def main(seconds, threads):
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = {"minatar": MinAtarNet, "nature": NatureNet}.get(NET, Net)()
    opt = torch.optim.RMSprop(net.parameters(), lr=6e-4, alpha=0.99, eps=0.01)
    if NET == "minatar":
        obs = (torch.rand(T + 1, B, OBS) < 0.1).float()
    elif NET == "nature":
        obs = torch.randint(0, 256, (T + 1, B, OBS)).float()
    else:
        obs = torch.rand(T + 1, B, OBS) * 2 - 1
    actions = torch.randint(0, A, (T, B))
    behaviour = torch.full((T, B), float(torch.log(torch.tensor(1.0 / A))))
    rewards = torch.ones(T, B)
    terminated = (torch.rand(T, B) < 0.05).float()
    discounts = (1 - terminated) * 0.99

    def step():
        logits, values = net(obs.reshape(-1, OBS))
        logits = logits.reshape(T + 1, B, A)[:T]
        values = values.reshape(T + 1, B)
        log_probs = F.log_softmax(logits, -1)
        target = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        vs, pg_adv = vtrace(target.detach() - behaviour, discounts, rewards, values[:T].detach(), values[T].detach())
        pg_loss = -(pg_adv * target).sum()
        baseline_loss = 0.5 * ((vs - values[:T]) ** 2).sum()
        entropy_loss = (log_probs.exp() * log_probs).sum()
        loss = pg_loss + 0.5 * baseline_loss + 0.01 * entropy_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 40.0)
        opt.step()

    for _ in range(5 if NET == "nature" else 50):
        step()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "torch_version": torch.__version__,
        "net": NET,
        "threads": torch.get_num_threads(),
        "steps_per_s": steps / elapsed,
        "samples_per_s": steps * T * B / elapsed,
    }))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
