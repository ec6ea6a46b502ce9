"""The Ape-X DQN update of benches/learner_step.rs (`apex_mlp64x64_b32_t20`)
in PyTorch, on CPU: MLP 64x64 (ReLU) with an advantage head and a value head
read as a dueling Q-network, a target network copied every 100 steps,
n-step (n = 3) double-Q targets inside each unroll (termination: no
bootstrap; truncation: the final observation; the unroll's end: x_T),
IS-weighted Huber loss (mean over T x B), global-norm clipping at 40,
Adam(lr 5e-4), and one priority per unroll (0.9 max|d| + 0.1 mean|d|) moved
to the host, on a batch of 32 unrolls x T = 20 (obs 4, 2 actions). Prints
one JSON object. Arguments: seconds to measure, threads (0: PyTorch's
default).
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

T, B, OBS, A, N, GAMMA, ETA = 20, 32, 4, 2, 3, 0.99, 0.9


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.torso = torch.nn.Sequential(
            torch.nn.Linear(OBS, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU()
        )
        self.advantage = torch.nn.Linear(64, A)
        self.value = torch.nn.Linear(64, 1)

    def forward(self, x):
        h = self.torso(x)
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(-1, keepdim=True)


def shifted(x, k):
    """Rows t + k of x (time-major), zeros past the end."""
    if k == 0:
        return x
    pad = torch.zeros((k,) + x.shape[1:], dtype=x.dtype)
    return torch.cat([x[k:], pad], 0)


def n_step_targets(rewards, terminated, truncated, state_values, final_values):
    """G_t over [T, B]: up to N rewards, stopping at an episode end or T."""
    t_idx = torch.arange(T).unsqueeze(1)
    running = torch.ones(T, B, dtype=torch.bool)
    g = torch.zeros(T, B)
    disc = 1.0
    for k in range(N):
        act = running & (t_idx + k < T)
        term = shifted(terminated, k)
        trunc = shifted(truncated, k) & ~term
        g = g + torch.where(act, disc * shifted(rewards, k), 0.0)
        g = g + torch.where(act & trunc, disc * GAMMA * shifted(final_values, k), 0.0)
        ends = term | trunc
        last = act & ~ends & ((k == N - 1) | (t_idx + k + 1 == T))
        g = g + torch.where(last, disc * GAMMA * shifted(state_values, k + 1)[:T], 0.0)
        running = act & ~ends
        disc *= GAMMA
    return g


def main(seconds, threads):
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    online, target = Net(), Net()
    target.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=5e-4)
    obs = torch.rand(T + 1, B, OBS) * 2 - 1
    finals = torch.zeros(T, B, OBS)
    actions = (torch.rand(T, B) < 0.5).long()
    rewards = torch.ones(T, B)
    terminated = torch.rand(T, B) < 0.05
    truncated = torch.zeros(T, B, dtype=torch.bool)
    weights = torch.rand(B) * 0.9 + 0.1
    steps = 0

    def step():
        nonlocal steps
        q = online(obs.reshape(-1, OBS)).reshape(T + 1, B, A)
        with torch.no_grad():
            q_target = target(obs.reshape(-1, OBS)).reshape(T + 1, B, A)
            greedy = q.detach().argmax(-1, keepdim=True)
            state_values = q_target.gather(-1, greedy).squeeze(-1)
            if truncated.any():
                f = finals.reshape(-1, OBS)
                fg = online(f).argmax(-1, keepdim=True)
                final_values = target(f).gather(-1, fg).squeeze(-1).reshape(T, B)
            else:
                final_values = torch.zeros(T, B)
            g = n_step_targets(rewards, terminated, truncated, state_values, final_values)
        q_taken = q[:T].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        td = g - q_taken
        huber = F.huber_loss(q_taken, g, reduction="none", delta=1.0)
        loss = (huber * weights.unsqueeze(0)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), 40.0)
        opt.step()
        abs_td = td.detach().abs()
        priorities = ETA * abs_td.max(0).values + (1 - ETA) * abs_td.mean(0)
        priorities.numpy()
        steps += 1
        if steps % 100 == 0:
            target.load_state_dict(online.state_dict())

    for _ in range(50):
        step()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "steps": n,
                "seconds": elapsed,
                "steps_per_s": n / elapsed,
                "samples_per_s": n * T * B / elapsed,
            }
        )
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
