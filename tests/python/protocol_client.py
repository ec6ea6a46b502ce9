#!/usr/bin/env python3
"""Independent client for the cml-rl replay-shard wire protocol (version 2).

Written from docs/PROTOCOL.md alone, as a check that the document is enough.
Runs a fixed list of checks against one running shard (any layout: f32 or
u8 observations of any shape, with or without a recurrent state;
prioritized mode) and prints one line per check, then `ALL OK`; exits 1 at
the first failure. Needs pyzmq, msgpack and blake3 (no NumPy).

    protocol_client.py --endpoint tcp://127.0.0.1:5600 --key-file run.key [--shard 0]

Assumes no other client talks to the shard while it runs (the bad-input
checks compare `stats.rejected` counters), but not that the shard is empty.
"""
import argparse
import math
import os
import struct
import sys
import time

import blake3
import msgpack
import zmq

TIMEOUT_MS = 5000          # every wait for a reply
SILENCE_MS = 500           # how long "no reply" is watched for
ACTOR_ID = 4242            # our unrolls are recognised by this actor id ...
VERSIONS = [0, 1, 2]       # ... and these policy versions
INIT_PRIORITIES = [1.0, 2.0, 3.0]
EPISODE = {"actor_id": ACTOR_ID, "return": 12.5, "length": 13}
NAMES = ["observations", "actions", "behaviour_log_probs", "rewards",
         "terminated", "truncated", "final_observations", "initial_recurrent_state"]
VERSION = 2                # the protocol version (header "v")
REASONS = {"malformed", "bad_mac", "version", "unknown_type", "replayed", "oversize",
           "bad_body", "bad_tensor", "bad_value", "wrong_shard", "no_credit", "unexpected"}
WELCOME_FIELDS = ["shard", "shards", "mode", "layout", "credit", "capacity",
                  "max_message_bytes", "credit_window", "sender_timeout_ms", "incarnation"]
BATCH_FIELDS = ["request_id", "shard", "incarnation", "count", "keys", "priorities",
                "times_sampled", "actor_ids", "policy_versions", "size",
                "total_priority", "min_priority", "episodes", "tensors"]
FMT = {"f32": "f", "u32": "I", "u8": "B"}
SIZE = {"f32": 4, "u32": 4, "u8": 1}


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def mac(key, frames):
    """Section 3: keyed BLAKE3 over u32_le(k) || (u64_le(len) || frame)*."""
    h = blake3.blake3(key=key)
    h.update(struct.pack("<I", len(frames)))
    for f in frames:
        h.update(struct.pack("<Q", len(f)))
        h.update(f)
    return h.digest()


class Link:
    """One DEALER connection with its own random sender id and seq counter."""

    def __init__(self, ctx, endpoint, key):
        self.key = key
        self.sender = int.from_bytes(os.urandom(8), "little")
        self.seq = 0
        self.peer_seq = {}               # shard sender id -> last reply seq
        self.sock = ctx.socket(zmq.DEALER)
        for opt, val in [(zmq.MAXMSGSIZE, -1), (zmq.SNDHWM, 1000), (zmq.RCVHWM, 1000),
                         (zmq.HEARTBEAT_IVL, 1000), (zmq.HEARTBEAT_TIMEOUT, 5000),
                         (zmq.LINGER, 200), (zmq.RECONNECT_IVL, 100),
                         (zmq.RECONNECT_IVL_MAX, 2000)]:
            self.sock.setsockopt(opt, val)
        self.sock.connect(endpoint)

    def seal(self, kind, body, payload=(), seq=None):
        """Frames of a message; takes the next seq unless one is given."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        header = msgpack.packb({"v": VERSION, "type": kind, "sender": self.sender,
                                "seq": seq, "body": body})
        frames = [header, *payload]
        return seq, frames + [mac(self.key, frames)]

    def send(self, kind, body, payload=(), seq=None):
        seq, frames = self.seal(kind, body, payload, seq)
        self.sock.send_multipart(frames)
        return seq

    def recv(self, timeout_ms=TIMEOUT_MS):
        """Next authentic reply as (type, body, payload frames), or None on timeout."""
        deadline = time.monotonic() + timeout_ms / 1000
        for _ in range(1000):                                  # bounded
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0 or not self.sock.poll(left):
                return None
            frames = self.sock.recv_multipart()
            check(len(frames) >= 2 and len(frames[-1]) == 32
                  and mac(self.key, frames[:-1]) == frames[-1], "reply with a bad MAC")
            h = msgpack.unpackb(frames[0])
            check(h.get("v") == VERSION, f"reply with version {h.get('v')!r}")
            check(h["seq"] > self.peer_seq.get(h["sender"], 0), "reply seq not increasing")
            self.peer_seq[h["sender"]] = h["seq"]
            return h["type"], h["body"], frames[1:-1]
        return None

    def expect(self, kind, what):
        reply = self.recv()
        check(reply is not None, f"{what}: no reply within {TIMEOUT_MS} ms")
        if reply[0] == "error":
            raise CheckFailed(f"{what}: got error {reply[1]}")
        check(reply[0] == kind, f"{what}: expected {kind}, got {reply[0]}")
        return reply[1], reply[2]

    def expect_error(self, seq, reason, what):
        reply = self.recv()
        check(reply is not None, f"{what}: no error reply within {TIMEOUT_MS} ms")
        check(reply[0] == "error", f"{what}: expected error, got {reply[0]} {reply[1]}")
        body = reply[1]
        check(body.get("seq") == seq and body.get("reason") == reason,
              f"{what}: expected error seq={seq} reason={reason}, got {body}")
        return body

    def expect_silence(self, what):
        reply = self.recv(SILENCE_MS)
        check(reply is None, f"{what}: expected no reply, got {reply and reply[:2]}")

    def stats(self, what="get_stats"):
        self.send("get_stats", {})
        return self.expect("stats", what)[0]


# ---------------------------------------------------------------- unrolls

def specs_for(layout, b, finals):
    """The tensor descriptions of section 6.3 for batch dimension b and
    `finals` truncated steps (7, or 8 with a recurrent state)."""
    t, shape, act = layout["unroll_length"], layout["observation_shape"], layout["action"]
    o = layout["observation_dtype"]
    a_dtype, a_shape = ("u32", [b, t]) if act["kind"] == "discrete" else ("f32", [b, t, act["dim"]])
    shapes = [(o, [b, t + 1, *shape]), (a_dtype, a_shape), ("f32", [b, t]), ("f32", [b, t]),
              ("u8", [b, t]), ("u8", [b, t]), (o, [finals, *shape])]
    s = layout.get("recurrent_state_size", 0)
    if s:
        shapes.append(("f32", [b, s]))
    return [{"name": n, "dtype": dt, "shape": sh} for n, (dt, sh) in zip(NAMES, shapes)]


def obs_dim(layout):
    return math.prod(layout["observation_shape"])


def pack(dtype, values):
    if dtype == "u8":
        return bytes(int(v) % 256 for v in values)
    return struct.pack(f"<{len(values)}{FMT[dtype]}", *values)


def join_unrolls(unrolls):
    """The payload frames of a message holding these unrolls (each as
    make_unroll returns it): frame by frame, concatenated."""
    return [b"".join(u[i] for u in unrolls) for i in range(len(unrolls[0]))]


def split_unrolls(layout, frames, n):
    """The inverse of join_unrolls for a message of n unrolls: fixed-size
    frames are cut evenly; final observations by each unroll's truncations."""
    t, ob = layout["unroll_length"], obs_dim(layout) * SIZE[layout["observation_dtype"]]
    out, first = [], 0
    for j in range(n):
        u = [frame[j * (len(frame) // n):(j + 1) * (len(frame) // n)] if i != 6 else b""
             for i, frame in enumerate(frames)]
        k = sum(frames[5][j * t:(j + 1) * t])
        u[6] = frames[6][first * ob:(first + k) * ob]
        first += k
        out.append(u)
    return out


def make_unroll(layout, v):
    """One unroll (7 or 8 byte strings) with values that are distinct per
    version v and exactly representable in the observation dtype. v = 1 ends
    an episode, v = 2 is truncated (and so has one final observation)."""
    t_len, d_len, act = layout["unroll_length"], obs_dim(layout), layout["action"]
    o = layout["observation_dtype"]
    scale = 1.0 if o == "u8" else 0.25
    obs = [(v + 1) * 100.0 + t + d * scale for t in range(t_len + 1) for d in range(d_len)]
    if act["kind"] == "discrete":
        actions = pack("u32", [(t + v) % act["n"] for t in range(t_len)])
    else:
        actions = pack("f32", [0.5 * v - 0.25 * a for _ in range(t_len) for a in range(act["dim"])])
    logp = [-0.5 - 0.125 * t - v for t in range(t_len)]
    rewards = [1.0 + 0.5 * v + t for t in range(t_len)]
    term = [1 if (v == 1 and t == t_len - 1) else 0 for t in range(t_len)]
    trunc_step = t_len // 2 if v == 2 else -1
    trunc = [1 if t == trunc_step else 0 for t in range(t_len)]
    final = [(7.0 + d) for t in range(t_len) if t == trunc_step for d in range(d_len)]
    frames = [pack(o, obs), actions, pack("f32", logp), pack("f32", rewards),
              pack("u8", term), pack("u8", trunc), pack(o, final)]
    s = layout.get("recurrent_state_size", 0)
    if s:
        frames.append(pack("f32", [0.5 * v - 0.125 * i for i in range(s)]))
    return frames


def insert_body(shard, layout, versions, priorities=None, episodes=(), specs=None):
    b = len(versions)
    finals = sum(1 for v in versions if v == 2)
    return {"shard": shard, "count": b, "actor_ids": [ACTOR_ID] * b,
            "policy_versions": list(versions), "priorities": priorities,
            "episodes": list(episodes), "tensors": specs or specs_for(layout, b, finals)}


def rejected_delta(before, after):
    return {r: after["rejected"][r] - before["rejected"][r]
            for r in REASONS if after["rejected"][r] != before["rejected"][r]}


# ---------------------------------------------------------------- checks

class Run:
    def __init__(self, endpoint, key, shard):
        self.ctx = zmq.Context()
        self.endpoint, self.key, self.shard = endpoint, key, shard
        self.learner = Link(self.ctx, endpoint, key)
        self.actor = Link(self.ctx, endpoint, key)
        self.credit = 0
        self.want_keys = {}       # policy version -> the key it must have
        self.stored = {}          # policy version -> stored priority seen in a batch

    def close(self):
        for link in (self.learner, self.actor):
            link.sock.close(0)
        self.ctx.term()

    def check1_learner_hello(self):
        self.learner.send("hello", {"role": "learner"})
        w, _ = self.learner.expect("welcome", "hello as learner")
        missing = [f for f in WELCOME_FIELDS if f not in w]
        check(not missing, f"welcome lacks {missing}")
        lay = w["layout"]
        check(all(f in lay for f in ("unroll_length", "observation_shape", "observation_dtype",
                                     "action", "recurrent_state_size")), f"layout {lay}")
        check(lay["unroll_length"] >= 1 and obs_dim(lay) >= 1, f"layout {lay}")
        check(lay["observation_dtype"] in ("f32", "u8"), f"layout {lay}")
        check(lay["action"].get("kind") in ("discrete", "continuous"), f"action {lay['action']}")
        check(w["shard"] == self.shard and w["shard"] < w["shards"],
              f"welcome.shard {w['shard']} of {w['shards']}, wanted {self.shard}")
        check(w["mode"] == "prioritized", f"mode {w['mode']!r}, these checks need prioritized")
        check(w["credit"] == 0, f"learner welcome.credit {w['credit']}, spec says always 0")
        self.welcome, self.layout = w, lay
        # Fixed-size frames, plus room for a final observation at every step
        # (the shard's bound for batch sizes, section 6.5).
        one_obs = obs_dim(lay) * SIZE[lay["observation_dtype"]]
        self.item_bytes = sum(len(f) for f in make_unroll(lay, 0)) + lay["unroll_length"] * one_obs
        return (f"shard {w['shard']}/{w['shards']}, T={lay['unroll_length']}, "
                f"obs {lay['observation_dtype']} {lay['observation_shape']}, action={lay['action']}, "
                f"state {lay['recurrent_state_size']}, worst item {self.item_bytes} B")

    def check2_actor_hello(self):
        self.actor.send("hello", {"role": "actor"})
        w, _ = self.actor.expect("welcome", "hello as actor")
        check(w["credit"] > 0, f"actor welcome.credit {w['credit']}")
        check(w["credit"] == w["credit_window"],
              f"prioritized mode: credit {w['credit']} != credit_window {w['credit_window']}")
        check(w["incarnation"] == self.welcome["incarnation"], "incarnation differs between welcomes")
        self.credit = w["credit"]
        return f"credit {w['credit']}"

    def check3_insert(self):
        check(self.credit >= len(VERSIONS), f"credit {self.credit} < {len(VERSIONS)}")
        # keys are 0, 1, 2, ... in insertion order (section 8): ours follow inserted_total
        base = self.actor.stats("stats before insert")["inserted_total"]
        self.want_keys = {v: base + i for i, v in enumerate(VERSIONS)}
        self.unrolls = {v: make_unroll(self.layout, v) for v in VERSIONS}
        payload = join_unrolls([self.unrolls[v] for v in VERSIONS])
        body = insert_body(self.shard, self.layout, VERSIONS, INIT_PRIORITIES, [EPISODE])
        seq = self.actor.send("insert", body, payload)
        self.credit -= len(VERSIONS)
        c, _ = self.actor.expect("credit", "insert of 3")
        check(c["ack_seq"] == seq and c["stored"] == len(VERSIONS),
              f"credit {c}, wanted ack_seq={seq} stored=3")
        check(c["grant"] == len(VERSIONS), f"prioritized mode: grant {c['grant']} != 3")
        self.credit += c["grant"]
        after = self.actor.stats("stats after insert")["inserted_total"]
        check(after == base + len(VERSIONS), f"inserted_total {base} -> {after}")
        return f"ack_seq {seq}, stored {c['stored']}, grant {c['grant']}"

    def sample(self, request_id, count=64):
        self.learner.send("sample", {"request_id": request_id, "count": count})
        b, frames = self.learner.expect("batch", f"sample #{request_id}")
        missing = [f for f in BATCH_FIELDS if f not in b]
        check(not missing, f"batch lacks {missing}")
        n = b["count"]
        check(b["request_id"] == request_id, f"batch.request_id {b['request_id']} != {request_id}")
        check(b["shard"] == self.shard and b["incarnation"] == self.welcome["incarnation"],
              "batch shard/incarnation differ from welcome")
        cap = max(1, (self.welcome["max_message_bytes"] // 2) // self.item_bytes)
        check(1 <= n <= min(count, cap), f"batch.count {n} (asked {count}, limit {cap})")
        for f in ("keys", "priorities", "times_sampled", "actor_ids", "policy_versions"):
            check(len(b[f]) == n, f"batch.{f} has {len(b[f])} entries, count {n}")
        want_frames = 8 if self.layout["recurrent_state_size"] else 7
        check(len(frames) == want_frames, f"batch has {len(frames)} payload frames")
        finals = sum(frames[5])                          # one per truncated step
        check(b["tensors"] == specs_for(self.layout, n, finals), f"batch.tensors {b['tensors']}")
        for spec, frame in zip(b["tensors"], frames):
            want = math.prod(spec["shape"]) * SIZE[spec["dtype"]]
            check(len(frame) == want, f"batch frame {spec['name']}: {len(frame)} B, wanted {want}")
        check(b["size"] >= len(VERSIONS), f"batch.size {b['size']} (a sample cap configured?)")
        check(all(b["min_priority"] <= p for p in b["priorities"]), "min_priority above a drawn one")
        return b, frames

    def match_ours(self, b, frames):
        """Compare every draw of our unrolls byte for byte; returns [(version, j)].
        Draws with our actor id and version but another key are from an earlier
        run against the same shard process and are skipped."""
        n, hits = b["count"], []
        ours = {k: v for v, k in self.want_keys.items()}
        draws = split_unrolls(self.layout, frames, n)
        for j in range(n):
            v, key = b["policy_versions"][j], b["keys"][j]
            if key in ours:
                check(b["actor_ids"][j] == ACTOR_ID and v == ours[key],
                      f"key {key} came back as actor {b['actor_ids'][j]} version {v}, "
                      f"wanted actor {ACTOR_ID} version {ours[key]}")
            if b["actor_ids"][j] != ACTOR_ID or v not in self.unrolls or key != self.want_keys[v]:
                continue
            for i, frame in enumerate(draws[j]):
                check(frame == self.unrolls[v][i],
                      f"version {v}: {NAMES[i]} bytes differ from what was inserted")
            hits.append((v, j))
        return hits

    def check4_sample(self):
        seen, episode_batches, draws = set(), [], 0
        for rid in range(1, 51):                                     # at most 50 samples
            b, frames = self.sample(rid)
            if EPISODE in b["episodes"]:
                episode_batches.append(rid)
            for v, j in self.match_ours(b, frames):
                seen.add(v)
                draws += 1
                self.stored[v] = b["priorities"][j]
            if seen == set(VERSIONS):
                break
        check(seen == set(VERSIONS), f"after 50 samples saw only versions {sorted(seen)}")
        check(episode_batches, "our episode was in no batch")
        check(episode_batches == [1], f"episode in batches {episode_batches}; the first "
              "batch after the insert should have drained it (section 6.6), exactly once")
        # stored = p^alpha: alpha from versions 0/1, then version 2 must agree
        p = self.stored
        self.alpha = math.log(p[1] / p[0]) / math.log(INIT_PRIORITIES[1] / INIT_PRIORITIES[0])
        want2 = p[0] * (INIT_PRIORITIES[2] / INIT_PRIORITIES[0]) ** self.alpha
        check(abs(p[2] - want2) <= 1e-9 * want2, f"stored priorities {p} are not p^alpha")
        return (f"{rid} sample(s), {draws} draws of ours byte-exact, keys {self.want_keys}, "
                f"episode in batch #{episode_batches[0]}, stored priorities fit alpha={self.alpha:.4f}")

    def check5_priorities(self):
        before = self.learner.stats("stats before priorities")
        new_p = 8.0
        self.learner.send("priorities", {"incarnation": self.welcome["incarnation"],
                                         "keys": [self.want_keys[0]], "priorities": [new_p]})
        after = self.learner.stats("stats after priorities")   # an error would arrive first
        check(after["priority_updates_total"] == before["priority_updates_total"] + 1,
              f"priority_updates_total {before['priority_updates_total']} -> "
              f"{after['priority_updates_total']}")
        check(after["stale_updates_total"] == before["stale_updates_total"], "stale count moved")
        # the new stored priority shows up in later batches: max(p, eps)^alpha
        want = new_p ** self.alpha
        got = None
        for rid in range(100, 150):
            b, frames = self.sample(rid)
            hits = [j for v, j in self.match_ours(b, frames) if v == 0]
            if hits:
                got = b["priorities"][hits[0]]
                break
        check(got is not None, "updated key not drawn again in 50 samples")
        check(abs(got - want) <= 1e-9 * want, f"stored priority {got}, wanted 8^alpha = {want}")
        # a wrong incarnation makes the update stale
        self.learner.send("priorities", {"incarnation": (self.welcome["incarnation"] + 1) % 2**64,
                                         "keys": [self.want_keys[0]], "priorities": [1.0]})
        stale = self.learner.stats("stats after stale priorities")
        check(stale["stale_updates_total"] == after["stale_updates_total"] + 1
              and stale["priority_updates_total"] == after["priority_updates_total"],
              "update with another incarnation not counted as stale")
        return (f"priority_updates_total {before['priority_updates_total']} -> "
                f"{after['priority_updates_total']}, stored {got:.6g} = 8^alpha; "
                "wrong incarnation counted stale")

    def bad(self, reason, action):
        """Run action(); the only change in stats.rejected must be reason +1."""
        before = self.learner.stats(f"stats before {reason}")
        detail = action()
        after = self.learner.stats(f"stats after {reason}")
        check(set(after["rejected"]) == REASONS, f"rejected keys {sorted(after['rejected'])}")
        delta = rejected_delta(before, after)
        check(delta == {reason: 1}, f"{reason}: rejected changed by {delta}")
        for field in ("outstanding_credit", "inserted_total"):         # nothing stored or charged
            check(after[field] == before[field],
                  f"{reason}: {field} {before[field]} -> {after[field]}")
        return f"{reason} +1" + (f" ({detail})" if detail else "")

    def bad_insert(self, link, reason, body, payload):
        seq = link.send("insert", body, payload)
        err = link.expect_error(seq, reason, f"insert expecting {reason}")
        return f"error: {err['detail']}"

    def check6_bad_input(self):
        lines = []
        lay, one = self.layout, self.unrolls[0]

        def bad_mac():
            seq, frames = self.learner.seal("get_stats", {})
            frames[-1] = bytes([frames[-1][0] ^ 1]) + frames[-1][1:]
            self.learner.sock.send_multipart(frames)
            self.learner.expect_silence("wrong MAC")
            # check 3 comes before check 8: the seq was not used up
            self.learner.send("get_stats", {}, seq=seq)
            self.learner.expect("stats", "get_stats reusing the bad-MAC seq")
            return "no reply; its seq was still usable"
        lines.append(self.bad("bad_mac", bad_mac))

        def replayed():
            self.learner.send("get_stats", {}, seq=1)
            self.learner.expect_silence("replayed seq")
            return "no reply"
        lines.append(self.bad("replayed", replayed))

        nan_reward = bytearray(one[3])
        nan_reward[0:4] = struct.pack("<f", float("nan"))
        lines.append(self.bad("bad_value", lambda: self.bad_insert(
            self.actor, "bad_value", insert_body(self.shard, lay, [7]),
            [*one[:3], bytes(nan_reward), *one[4:]])))

        specs = specs_for(lay, 1, 0)
        specs[0] = dict(specs[0], shape=[1, lay["unroll_length"], *lay["observation_shape"]])
        o = SIZE[lay["observation_dtype"]]
        short_obs = one[0][:o * lay["unroll_length"] * obs_dim(lay)]
        lines.append(self.bad("bad_tensor", lambda: self.bad_insert(
            self.actor, "bad_tensor", insert_body(self.shard, lay, [7], specs=specs),
            [short_obs, *one[1:]])))

        # A truncated step without its final observation (v = 2 has one).
        two = make_unroll(lay, 2)
        lines.append(self.bad("bad_tensor", lambda: self.bad_insert(
            self.actor, "bad_tensor", insert_body(self.shard, lay, [7], specs=specs_for(lay, 1, 0)),
            [*two[:6], b"", *two[7:]])))

        lines.append(self.bad("wrong_shard", lambda: self.bad_insert(
            self.actor, "wrong_shard", insert_body(self.shard + 1, lay, [7]), one)))

        stranger = Link(self.ctx, self.endpoint, self.key)
        try:
            lines.append(self.bad("no_credit", lambda: self.bad_insert(
                stranger, "no_credit", insert_body(self.shard, lay, [7]), one)))
        finally:
            stranger.sock.close(0)
        return "; ".join(lines) + "; inserted_total and outstanding_credit unchanged"


def check7_vectors():
    key = bytes(range(32))
    frames = [b"\x81\xa1v\x01", b"abc"]
    inp = bytes.fromhex("02000000" "0400000000000000" "81a17601" "0300000000000000" "616263")
    check(struct.pack("<I", 2) + struct.pack("<Q", 4) + frames[0]
          + struct.pack("<Q", 3) + frames[1] == inp, "vector 1: MAC input")
    check(mac(key, frames).hex() ==
          "00993e7a36e56bf1af3c5e6099ea677382f765d4499d7c93d18d4f7cb58d0ba3", "vector 1: MAC")
    h2 = msgpack.packb({"v": 2, "type": "get_stats", "sender": 1, "seq": 1, "body": {}})
    check(h2.hex() == "85a17602a474797065a96765745f7374617473a673656e64657201a373657101a4626f647980"
          and len(h2) == 38, "vector 2: header")
    check(mac(key, [h2]).hex() ==
          "090bcb9aac489984ff602416b3e08b555bd622f20f822e6a85c72a1f59fb51e5", "vector 2: MAC")
    h3 = msgpack.packb({"v": 2, "type": "hello", "sender": 1, "seq": 2, "body": {"role": "actor"}})
    check(h3.hex() == "85a17602a474797065a568656c6c6fa673656e64657201a373657102a4626f647981"
          "a4726f6c65a56163746f72" and len(h3) == 45, "vector 3: header")
    check(mac(key, [h3]).hex() ==
          "4ae3b4170c36c8f8f3456e71b566739f2f61bb11e18862885e8fe139a864eab8", "vector 3: MAC")
    # blake3 keyed mode against the official keyed test vector for empty input
    check(blake3.blake3(b"", key=b"whats the Elvish word for friend").hexdigest() ==
          "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26", "BLAKE3 keyed empty")
    return "MAC input, 3 MACs, 2 headers byte-identical"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--shard", type=int, default=0)
    args = ap.parse_args()
    try:                                    # section 4: 64 hex digits, whitespace trimmed
        key = bytes.fromhex(open(args.key_file).read().strip())
    except (OSError, ValueError) as e:
        print(f"FAIL key file {args.key_file}: {e}")
        return 1
    if len(key) != 32:
        print(f"FAIL key file {args.key_file}: {len(key)} bytes, wanted 32")
        return 1
    run = Run(args.endpoint, key, args.shard)
    steps = [("1. hello as learner -> welcome", run.check1_learner_hello),
             ("2. hello as actor -> welcome with credit", run.check2_actor_hello),
             ("3. insert 3 unrolls -> credit", run.check3_insert),
             ("4. sample until all 3 seen, byte-exact, episode", run.check4_sample),
             ("5. priorities update -> stats", run.check5_priorities),
             ("6. bad input -> rejected counters and errors", run.check6_bad_input),
             ("7. MAC and header test vectors", check7_vectors)]
    try:
        for name, fn in steps:
            try:
                detail = fn()
            except CheckFailed as e:
                print(f"FAIL {name}: {e}")
                return 1
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                print(f"FAIL {name}: unexpected message shape: {type(e).__name__}: {e}")
                return 1
            print(f"ok   {name}: {detail}")
    finally:
        run.close()
    print("ALL OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
