//! MinAtar Freeway (minatar/environments/freeway.py, 1.0.15).
//!
//! A chicken crosses eight lanes of cars from the bottom row to the top; it
//! may move once every 3 frames; +1 per crossing, after which the cars get new
//! random speeds; a car sends it back to the bottom. The episode ends after
//! 2500 frames. Channels: chicken, car, and five trail channels whose index
//! says how often the car moves (every frame … every 5 frames).

use super::random_state::RandomState;
use super::{Frame, Game, ObsCell, DOWN, UP};

const PLAYER_SPEED: i32 = 3;
const TIME_LIMIT: i32 = 2500;
const CHICKEN: usize = 0;
const CAR: usize = 1;
const SPEED1: usize = 2;

/// One car: `[x, y, frames until it moves, signed speed]`.
type Car = [i32; 4];

/// Freeway's game state.
#[derive(Clone, Debug, Default)]
pub struct Freeway {
    cars: [Car; 8],
    pos: i32,
    move_timer: i32,
    terminate_timer: i32,
    terminal: bool,
}

impl Freeway {
    /// `_randomize_cars`: eight speeds from `randint(1, 6, 8)`, then eight
    /// directions `sign(rand(8) − 0.5)`, in that order on the stream.
    fn randomize_cars(&mut self, rng: &mut RandomState, initialize: bool) {
        let mut speeds = [0i32; 8];
        for s in &mut speeds {
            *s = rng.randint(1, 6) as i32;
        }
        for s in &mut speeds {
            let d = rng.rand() - 0.5;
            // np.sign: 0 for exactly 0.5 (never in practice, but exact).
            *s *= if d > 0.0 {
                1
            } else if d < 0.0 {
                -1
            } else {
                0
            };
        }
        for (i, (car, &speed)) in self.cars.iter_mut().zip(&speeds).enumerate() {
            if initialize {
                *car = [0, i as i32 + 1, speed.abs(), speed];
            } else {
                car[2] = speed.abs();
                car[3] = speed;
            }
        }
    }
}

impl Game for Freeway {
    const NAME: &'static str = "Freeway";
    const CHANNELS: usize = 7;
    const MINIMAL_ACTIONS: &'static [u8] = &[super::NOOP, UP, DOWN];

    fn new(_difficulty_ramping: bool) -> Self {
        Self::default()
    }

    fn reset(&mut self, rng: &mut RandomState) {
        self.randomize_cars(rng, true);
        self.pos = 9;
        self.move_timer = PLAYER_SPEED;
        self.terminate_timer = TIME_LIMIT;
        self.terminal = false;
    }

    fn act(&mut self, action: u8, rng: &mut RandomState) -> (i32, bool) {
        let mut reward = 0;
        if self.terminal {
            return (reward, true);
        }
        if action == UP && self.move_timer == 0 {
            self.move_timer = PLAYER_SPEED;
            self.pos = (self.pos - 1).max(0);
        } else if action == DOWN && self.move_timer == 0 {
            self.move_timer = PLAYER_SPEED;
            self.pos = (self.pos + 1).min(9);
        }

        // Win condition.
        if self.pos == 0 {
            reward += 1;
            self.randomize_cars(rng, false);
            self.pos = 9;
        }

        for car in &mut self.cars {
            if car[0] == 4 && car[1] == self.pos {
                self.pos = 9;
            }
            if car[2] == 0 {
                car[2] = car[3].abs();
                car[0] += if car[3] > 0 { 1 } else { -1 };
                if car[0] < 0 {
                    car[0] = 9;
                } else if car[0] > 9 {
                    car[0] = 0;
                }
                if car[0] == 4 && car[1] == self.pos {
                    self.pos = 9;
                }
            } else {
                car[2] -= 1;
            }
        }

        if self.move_timer > 0 {
            self.move_timer -= 1;
        }
        self.terminate_timer -= 1;
        if self.terminate_timer < 0 {
            self.terminal = true;
        }
        (reward, self.terminal)
    }

    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>) {
        frame.set(self.pos, 4, CHICKEN);
        // Python keeps `trail` from the previous car when a speed is 0 (a
        // direction draw of exactly 0.5); the first car then has none.
        let mut trail = None;
        for car in &self.cars {
            frame.set(car[1], car[0], CAR);
            let mut back_x = if car[3] > 0 { car[0] - 1 } else { car[0] + 1 };
            if back_x < 0 {
                back_x = 9;
            } else if back_x > 9 {
                back_x = 0;
            }
            if (1..=5).contains(&car[3].abs()) {
                trail = Some(SPEED1 + car[3].unsigned_abs() as usize - 1);
            }
            if let Some(channel) = trail {
                frame.set(car[1], back_x, channel);
            }
        }
    }
}
