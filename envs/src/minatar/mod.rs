//! Native MinAtar (Young & Tian, 2019): Asterix, Breakout, Freeway, Seaquest
//! and SpaceInvaders on a 10×10 grid, bit-exact with the `minatar` 1.0.15
//! package: the same seed, options and actions give the same observations,
//! rewards and terminal flags at every step.
//!
//! - Ids: `MinAtar/<Game>-v1` uses the game's minimal action set,
//!   `MinAtar/<Game>-v0` all six actions (`minatar.gym`'s registrations). No
//!   time limit (Freeway ends itself after 2500 frames).
//! - `[env.params]`: `sticky_action_prob` (default 0.1: with this
//!   probability the previous action is repeated) and `difficulty_ramping`
//!   (default true).
//! - Observations: `[10, 10, C]` cells in HWC order, cell `(y, x, c)` at
//!   flat index `(y·10 + x)·C + c`, 1 where the game's boolean state is
//!   true. Through [`Env`] they are `f32` 0/1; [`MinAtar::write_state`]
//!   also writes them as `u8`.
//! - Randomness: one NumPy `RandomState` (MT19937) per env, shared by the
//!   sticky-action draw, which happens on every step, and the game
//!   ([`RandomState`]). `reset(Some(seed))` is `Environment.seed(seed)`
//!   followed by `reset()`; `reset(None)` continues the stream. As in the
//!   Python, the previous action for sticky actions survives resets.

mod asterix;
mod breakout;
mod freeway;
mod random_state;
mod seaquest;
mod space_invaders;

pub use asterix::Asterix;
pub use breakout::Breakout;
pub use freeway::Freeway;
pub use random_state::RandomState;
pub use seaquest::Seaquest;
pub use space_invaders::SpaceInvaders;

use crate::env::{check_observation_buffer, discrete_action, Action, Env, EnvError, Step};
use crate::params::{ParamReader, Params};
use crate::registry::EnvSpec;
use crate::space::Space;

/// MinAtar's six actions, in `minatar`'s order (`['n','l','u','r','d','f']`).
pub const NOOP: u8 = 0;
pub const LEFT: u8 = 1;
pub const UP: u8 = 2;
pub const RIGHT: u8 = 3;
pub const DOWN: u8 = 4;
pub const FIRE: u8 = 5;
const ALL_ACTIONS: &[u8] = &[NOOP, LEFT, UP, RIGHT, DOWN, FIRE];

/// Default `sticky_action_prob`, as `minatar.Environment`.
pub const DEFAULT_STICKY_ACTION_PROB: f64 = 0.1;
const PARAMS: &[&str] = &["sticky_action_prob", "difficulty_ramping"];

/// A value an observation cell can be written as: `f32` or `u8`, 0 or 1.
pub trait ObsCell: Copy + Send + 'static {
    const OFF: Self;
    const ON: Self;
}

impl ObsCell for f32 {
    const OFF: Self = 0.0;
    const ON: Self = 1.0;
}

impl ObsCell for u8 {
    const OFF: Self = 0;
    const ON: Self = 1;
}

/// One observation being drawn, `[10, 10, C]` in HWC order.
pub struct Frame<'a, T> {
    cells: &'a mut [T],
    channels: usize,
}

impl<T: ObsCell> Frame<'_, T> {
    /// Turns cell `(y, x, c)` on, indexing as NumPy's `state[y, x, c] = 1`:
    /// a negative index counts from the end. An index past the grid would
    /// raise in NumPy and is never reached by the games; it is ignored.
    #[inline]
    pub fn set(&mut self, y: i32, x: i32, c: usize) {
        let wrap = |i: i32| -> Option<usize> {
            let i = if i < 0 { i + 10 } else { i };
            usize::try_from(i).ok().filter(|&i| i < 10)
        };
        if let (Some(y), Some(x)) = (wrap(y), wrap(x)) {
            if let Some(cell) = self.cells.get_mut((y * 10 + x) * self.channels + c) {
                *cell = T::ON;
            }
        }
    }
}

/// One MinAtar game's rules (a port of its `minatar.environments.<game>.Env`).
pub trait Game: Clone + Send + 'static {
    /// The game's name in ids, e.g. `"SpaceInvaders"`.
    const NAME: &'static str;
    /// Observation channels `C`.
    const CHANNELS: usize;
    /// The game's `minimal_action_set()`.
    const MINIMAL_ACTIONS: &'static [u8];
    /// A game before its first reset.
    fn new(difficulty_ramping: bool) -> Self;
    /// Starts an episode, drawing from `rng` as the Python does.
    fn reset(&mut self, rng: &mut RandomState);
    /// One frame with a game action (`NOOP`..`FIRE`): the reward and whether
    /// the episode is over. After the end it returns `(0, true)`.
    fn act(&mut self, action: u8, rng: &mut RandomState) -> (i32, bool);
    /// Turns on the cells of the current state (`frame` starts all off).
    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>);
}

/// A MinAtar game as an [`Env`] (`minatar.Environment` with `minatar.gym`'s
/// action sets).
#[derive(Clone, Debug)]
pub struct MinAtar<G: Game> {
    id: String,
    game: G,
    rng: Option<RandomState>,
    sticky_action_prob: f64,
    last_action: u8,
    action_set: &'static [u8],
    started: bool,
    observation_space: Space,
    action_space: Space,
}

impl<G: Game> MinAtar<G> {
    /// The registry id: `MinAtar/<Game>-v1` with the minimal action set,
    /// `-v0` with all six.
    pub fn id(minimal_action_set: bool) -> String {
        format!("MinAtar/{}-v{}", G::NAME, u8::from(minimal_action_set))
    }

    /// The observation shape `[10, 10, C]`.
    pub fn observation_shape() -> [usize; 3] {
        [10, 10, G::CHANNELS]
    }

    /// A game with the given options. `sticky_action_prob` must lie in
    /// [0, 1].
    pub fn new(minimal_action_set: bool, sticky_action_prob: f64, difficulty_ramping: bool) -> Result<Self, EnvError> {
        let id = Self::id(minimal_action_set);
        if !(0.0..=1.0).contains(&sticky_action_prob) {
            return Err(EnvError::InvalidParam {
                env: id,
                key: "sticky_action_prob".into(),
                reason: format!("expected a probability in [0, 1], found {sticky_action_prob}"),
            });
        }
        let action_set = if minimal_action_set {
            G::MINIMAL_ACTIONS
        } else {
            ALL_ACTIONS
        };
        Ok(MinAtar {
            id,
            game: G::new(difficulty_ramping),
            rng: None,
            sticky_action_prob,
            last_action: NOOP,
            action_set,
            started: false,
            observation_space: Space::u8_box(0, 1, Self::observation_shape().to_vec()),
            action_space: Space::Discrete(action_set.len()),
        })
    }

    /// From the config's `[env.params]`: `sticky_action_prob` (number in
    /// [0, 1], default 0.1), `difficulty_ramping` (boolean, default true).
    pub fn from_params(minimal_action_set: bool, params: &Params) -> Result<Self, EnvError> {
        let id = Self::id(minimal_action_set);
        let reader = ParamReader::new(&id, params, PARAMS)?;
        let sticky = reader.f64_or("sticky_action_prob", DEFAULT_STICKY_ACTION_PROB)?;
        let ramping = reader.bool_or("difficulty_ramping", true)?;
        Self::new(minimal_action_set, sticky, ramping)
    }

    /// The game actions the env's action indices stand for.
    pub fn action_set(&self) -> &'static [u8] {
        self.action_set
    }

    /// Writes the current observation (`minatar`'s `state()`) into `out`,
    /// `100·C` cells, as `f32` or `u8` 0/1.
    pub fn write_state<T: ObsCell>(&self, out: &mut [T]) -> Result<(), EnvError> {
        if out.len() != 100 * G::CHANNELS {
            return Err(EnvError::ObservationBuffer {
                env: self.id.clone(),
                expected: 100 * G::CHANNELS,
                got: out.len(),
                space: self.observation_space.to_string(),
            });
        }
        out.fill(T::OFF);
        let mut frame = Frame {
            cells: out,
            channels: G::CHANNELS,
        };
        self.game.draw(&mut frame);
        Ok(())
    }

    fn registry_spec(minimal_action_set: bool) -> EnvSpec {
        EnvSpec::new(Self::id(minimal_action_set), move |p: &Params| {
            Self::from_params(minimal_action_set, p)
        })
    }
}

impl<G: Game> Env for MinAtar<G> {
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        check_observation_buffer(&self.id, &self.observation_space, obs)?;
        if let Some(seed) = seed {
            self.rng = Some(RandomState::from_seed(seed));
        }
        let rng = self.rng.get_or_insert_with(RandomState::from_os_entropy);
        self.game.reset(rng);
        self.started = true;
        self.write_state(obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step, EnvError> {
        check_observation_buffer(&self.id, &self.observation_space, obs)?;
        let index = discrete_action(&self.id, &self.action_space, action)?;
        let (true, Some(rng)) = (self.started, self.rng.as_mut()) else {
            return Err(EnvError::ResetNeeded { env: self.id.clone() });
        };
        // `Environment.act`: one draw on every step, even when it cannot
        // stick.
        let mut game_action = self.action_set[index];
        if rng.rand() < self.sticky_action_prob {
            game_action = self.last_action;
        }
        self.last_action = game_action;
        let (reward, terminal) = self.game.act(game_action, rng);
        self.write_state(obs)?;
        Ok(Step {
            reward: f64::from(reward),
            terminated: terminal,
            truncated: false,
        })
    }
}

/// The ten MinAtar registrations (five games, `-v0` and `-v1`).
pub(crate) fn registry_specs() -> Vec<EnvSpec> {
    let mut specs = Vec::with_capacity(10);
    for minimal in [false, true] {
        specs.push(MinAtar::<Asterix>::registry_spec(minimal));
        specs.push(MinAtar::<Breakout>::registry_spec(minimal));
        specs.push(MinAtar::<Freeway>::registry_spec(minimal));
        specs.push(MinAtar::<Seaquest>::registry_spec(minimal));
        specs.push(MinAtar::<SpaceInvaders>::registry_spec(minimal));
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spaces_and_params() {
        let env = MinAtar::<SpaceInvaders>::from_params(true, &Params::new()).unwrap();
        assert_eq!(MinAtar::<SpaceInvaders>::id(true), "MinAtar/SpaceInvaders-v1");
        assert_eq!(env.action_space(), &Space::Discrete(4));
        assert_eq!(env.action_set(), &[NOOP, LEFT, RIGHT, FIRE]);
        assert_eq!(env.observation_space().flat_dim(), 600);
        let all = MinAtar::<Breakout>::new(false, 0.0, true).unwrap();
        assert_eq!(all.action_space(), &Space::Discrete(6));

        let p: Params = "sticky_action_prob = 1.5".parse().unwrap();
        let e = MinAtar::<Breakout>::from_params(true, &p).unwrap_err();
        assert!(
            e.to_string()
                .contains("MinAtar/Breakout-v1: parameter `sticky_action_prob`"),
            "{e}"
        );
        let p: Params = "difficulty_ramping = 1".parse().unwrap();
        assert!(MinAtar::<Asterix>::from_params(true, &p).is_err());
        let p: Params = "sticky = 0.1".parse().unwrap();
        let e = MinAtar::<Asterix>::from_params(true, &p).unwrap_err();
        assert!(e.to_string().contains("unknown parameter `sticky`"), "{e}");
    }

    #[test]
    fn step_before_reset_and_bad_actions_are_errors() {
        let mut env = MinAtar::<Freeway>::new(true, 0.1, true).unwrap();
        let mut obs = vec![0.0f32; 700];
        let e = env.step(Action::Discrete(0), &mut obs).unwrap_err();
        assert!(matches!(e, EnvError::ResetNeeded { .. }), "{e}");
        env.reset(Some(1), &mut obs).unwrap();
        assert!(env.step(Action::Discrete(3), &mut obs).is_err());
        let mut short = vec![0.0f32; 699];
        assert!(env.step(Action::Discrete(0), &mut short).is_err());
    }

    #[test]
    fn negative_indices_wrap_like_numpy() {
        let mut cells = [0u8; 100];
        let mut frame = Frame {
            cells: &mut cells,
            channels: 1,
        };
        frame.set(0, -1, 0);
        frame.set(10, 0, 0);
        assert_eq!(cells[9], 1);
        assert_eq!(cells.iter().map(|&c| u32::from(c)).sum::<u32>(), 1);
    }
}
