//! MinAtar 1.0.15 conformance: every recorded episode in
//! `tests/fixtures/minatar/` (recorded from `minatar.Environment`, see
//! tests/fixtures/REFERENCE.md) and in `tests/fixtures/minatar/extra/` (more
//! seeds and options, recorded the same way by `record_extra.py`; Freeway
//! has none there, its episodes are long and alike) is replayed through the registry
//! (`make("MinAtar/<Game>-v0|v1")` with the episode's `[env.params]`,
//! `reset(seed)`) and must match at every step: the observation cell for
//! cell, the reward and the terminal flag. The `u8` observations of
//! `MinAtar::write_state` are checked against the same cells.

use std::collections::BTreeSet;

use cml_envs::minatar::{Asterix, Breakout, Freeway, Game, MinAtar, Seaquest, SpaceInvaders};
use cml_envs::{make, Action, Env, Params, Space};
use serde::Deserialize;

#[derive(Deserialize)]
struct Recording {
    minatar_version: String,
    game: String,
    state_shape: [usize; 3],
    minimal_action_set: Vec<u8>,
    episodes: Vec<Episode>,
}

#[derive(Deserialize)]
struct Episode {
    seed: u64,
    sticky_action_prob: f64,
    difficulty_ramping: bool,
    minimal_action_set: bool,
    action_set: Vec<u8>,
    initial_obs_on: Vec<usize>,
    actions: Vec<i64>,
    steps: Vec<RecordedStep>,
    truncated_recording: bool,
}

#[derive(Deserialize)]
struct RecordedStep {
    reward: f64,
    terminal: bool,
    obs_on: Vec<usize>,
}

const GAMES: [(&str, &str); 5] = [
    ("asterix", "Asterix"),
    ("breakout", "Breakout"),
    ("freeway", "Freeway"),
    ("seaquest", "Seaquest"),
    ("space_invaders", "SpaceInvaders"),
];

fn fixture_dir() -> String {
    format!("{}/../tests/fixtures/minatar", env!("CARGO_MANIFEST_DIR"))
}

fn load(game: &str) -> Recording {
    load_from(&format!("{}/MinAtar-{game}.json", fixture_dir()))
}

fn load_from(path: &str) -> Recording {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let rec: Recording = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    assert_eq!(rec.minatar_version, "1.0.15");
    assert!(!rec.episodes.is_empty());
    rec
}

fn on_cells(obs: &[f32]) -> Vec<usize> {
    obs.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0.0)
        .map(|(i, _)| i)
        .collect()
}

/// Which cells differ, for a readable failure.
fn describe_difference(got: &[usize], want: &[usize], channels: usize) -> String {
    let (g, w): (BTreeSet<_>, BTreeSet<_>) = (got.iter().collect(), want.iter().collect());
    let cell = |i: &&usize| {
        format!(
            "(y {}, x {}, c {})",
            **i / channels / 10,
            **i / channels % 10,
            **i % channels
        )
    };
    let extra: Vec<String> = g.difference(&w).map(cell).collect();
    let missing: Vec<String> = w.difference(&g).map(cell).collect();
    format!("on but not recorded: {extra:?}; recorded but off: {missing:?}")
}

fn replay_game(game: &str, name: &str) {
    let rec = load(game);
    assert_eq!(rec.game, game);
    let mut steps = replay(&rec, name);
    let extra = format!("{}/extra/MinAtar-{game}.json", fixture_dir());
    if std::path::Path::new(&extra).exists() {
        let rec = load_from(&extra);
        assert_eq!(rec.game, game);
        steps += replay(&rec, name);
    }
    assert!(steps > 0);
}

/// Replays every episode of `rec`; the number of steps checked.
fn replay(rec: &Recording, name: &str) -> usize {
    let channels = rec.state_shape[2];
    let mut steps_checked = 0;
    for ep in &rec.episodes {
        let id = format!("MinAtar/{name}-v{}", u8::from(ep.minimal_action_set));
        let what = format!("{id} seed {}", ep.seed);
        if ep.minimal_action_set {
            assert_eq!(ep.action_set, rec.minimal_action_set, "{what}");
        }
        let params: Params = format!(
            "sticky_action_prob = {:?}\ndifficulty_ramping = {}",
            ep.sticky_action_prob, ep.difficulty_ramping
        )
        .parse()
        .expect("params");
        let mut env = make(&id, &params).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(env.action_space(), &Space::Discrete(ep.action_set.len()), "{what}");
        assert_eq!(env.observation_space().flat_dim(), 100 * channels, "{what}");
        let mut obs = vec![0.0f32; 100 * channels];
        env.reset(Some(ep.seed), &mut obs).expect("reset");
        assert_eq!(on_cells(&obs), ep.initial_obs_on, "{what}: initial observation");
        assert_eq!(ep.actions.len(), ep.steps.len(), "{what}");
        for (t, (&a, want)) in ep.actions.iter().zip(&ep.steps).enumerate() {
            let step = env
                .step(Action::Discrete(a), &mut obs)
                .unwrap_or_else(|e| panic!("{what} step {t}: {e}"));
            let got = on_cells(&obs);
            assert!(
                got == want.obs_on,
                "{what} step {t} (action {a}): observation differs: {}",
                describe_difference(&got, &want.obs_on, channels)
            );
            assert_eq!(step.reward, want.reward, "{what} step {t}: reward");
            assert_eq!(step.terminated, want.terminal, "{what} step {t}: terminal");
            assert!(!step.truncated, "{what} step {t}: MinAtar never truncates");
            steps_checked += 1;
        }
        if !ep.truncated_recording {
            assert!(
                ep.steps.last().is_some_and(|s| s.terminal),
                "{what}: a whole episode ends terminal"
            );
        }
    }
    steps_checked
}

#[test]
fn asterix_matches_minatar() {
    replay_game(GAMES[0].0, GAMES[0].1);
}

#[test]
fn breakout_matches_minatar() {
    replay_game(GAMES[1].0, GAMES[1].1);
}

#[test]
fn freeway_matches_minatar() {
    replay_game(GAMES[2].0, GAMES[2].1);
}

#[test]
fn seaquest_matches_minatar() {
    replay_game(GAMES[3].0, GAMES[3].1);
}

#[test]
fn space_invaders_matches_minatar() {
    replay_game(GAMES[4].0, GAMES[4].1);
}

/// The `u8` observation is the same cells as the `f32` one, along a whole
/// recorded episode of every game.
fn u8_matches_f32<G: Game>(game: &str) {
    let rec = load(game);
    let ep = &rec.episodes[0];
    let mut env = MinAtar::<G>::new(ep.minimal_action_set, ep.sticky_action_prob, ep.difficulty_ramping).expect("env");
    let n = 100 * G::CHANNELS;
    let (mut obs, mut cells) = (vec![0.0f32; n], vec![7u8; n]);
    env.reset(Some(ep.seed), &mut obs).expect("reset");
    for &a in &ep.actions {
        env.step(Action::Discrete(a), &mut obs).expect("step");
        env.write_state(&mut cells).expect("u8 state");
        let as_f32: Vec<f32> = cells.iter().map(|&c| f32::from(c)).collect();
        assert_eq!(as_f32, obs, "{game}");
    }
    assert!(env.write_state(&mut vec![0u8; n - 1]).is_err());
}

#[test]
fn u8_observations_match_f32_ones() {
    u8_matches_f32::<Asterix>("asterix");
    u8_matches_f32::<Breakout>("breakout");
    u8_matches_f32::<Freeway>("freeway");
    u8_matches_f32::<Seaquest>("seaquest");
    u8_matches_f32::<SpaceInvaders>("space_invaders");
}

/// Sticky actions follow the stream: with probability 1 every action is the
/// first one taken (NOOP, as a fresh `Environment`), whatever is asked.
#[test]
fn sticky_probability_one_repeats_the_first_action() {
    let mut stuck = MinAtar::<Breakout>::new(true, 1.0, true).expect("env");
    let mut noop = MinAtar::<Breakout>::new(true, 0.0, true).expect("env");
    let (mut a, mut b) = (vec![0.0f32; 400], vec![0.0f32; 400]);
    stuck.reset(Some(3), &mut a).expect("reset");
    noop.reset(Some(3), &mut b).expect("reset");
    for _ in 0..30 {
        let sa = stuck.step(Action::Discrete(2), &mut a).expect("step");
        let sb = noop.step(Action::Discrete(0), &mut b).expect("step");
        assert_eq!((a.as_slice(), sa), (b.as_slice(), sb));
        if sa.terminated {
            break;
        }
    }
}
