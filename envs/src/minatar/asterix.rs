//! MinAtar Asterix (minatar/environments/asterix.py, 1.0.15).
//!
//! The player moves in four directions; enemies and gold spawn at the sides
//! of rows 1–8 and cross the screen; +1 per gold picked up; touching an enemy
//! ends the episode. With difficulty ramping, spawning and movement speed up
//! over time. Channels: player, enemy, trail, gold.

use super::random_state::RandomState;
use super::{Frame, Game, ObsCell, DOWN, LEFT, RIGHT, UP};

const RAMP_INTERVAL: i32 = 100;
const INIT_SPAWN_SPEED: i32 = 10;
const INIT_MOVE_INTERVAL: i32 = 5;
const PLAYER: usize = 0;
const ENEMY: usize = 1;
const TRAIL: usize = 2;
const GOLD: usize = 3;

/// One enemy or gold: its cell, whether it moves right, whether it is gold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entity {
    x: i32,
    y: i32,
    moves_right: bool,
    gold: bool,
}

/// Asterix's game state.
#[derive(Clone, Debug)]
pub struct Asterix {
    ramping: bool,
    player_x: i32,
    player_y: i32,
    /// One slot per row 1–8.
    entities: [Option<Entity>; 8],
    spawn_speed: i32,
    spawn_timer: i32,
    move_speed: i32,
    move_timer: i32,
    ramp_timer: i32,
    ramp_index: i32,
    terminal: bool,
}

impl Asterix {
    /// `_spawn_entity`: side and kind are drawn first, then a free slot
    /// (none drawn if there is one free slot; nothing spawns if none).
    fn spawn_entity(&mut self, rng: &mut RandomState) {
        let moves_right = rng.rand() < 0.5;
        let gold = rng.rand() < 1.0 / 3.0;
        let x = if moves_right { 0 } else { 9 };
        let mut free = [0usize; 8];
        let mut n_free = 0;
        for (i, slot) in self.entities.iter().enumerate() {
            if slot.is_none() {
                free[n_free] = i;
                n_free += 1;
            }
        }
        if n_free == 0 {
            return;
        }
        let slot = free[rng.randint(0, n_free as i64) as usize];
        self.entities[slot] = Some(Entity {
            x,
            y: slot as i32 + 1,
            moves_right,
            gold,
        });
    }

    /// An entity on the player's cell: gold is collected, an enemy ends the
    /// episode.
    fn touch(&mut self, slot: usize, reward: &mut i32) {
        if let Some(e) = self.entities[slot] {
            if e.x == self.player_x && e.y == self.player_y {
                if e.gold {
                    self.entities[slot] = None;
                    *reward += 1;
                } else {
                    self.terminal = true;
                }
            }
        }
    }
}

impl Game for Asterix {
    const NAME: &'static str = "Asterix";
    const CHANNELS: usize = 4;
    const MINIMAL_ACTIONS: &'static [u8] = &[super::NOOP, LEFT, UP, RIGHT, DOWN];

    fn new(difficulty_ramping: bool) -> Self {
        Asterix {
            ramping: difficulty_ramping,
            player_x: 5,
            player_y: 5,
            entities: [None; 8],
            spawn_speed: INIT_SPAWN_SPEED,
            spawn_timer: INIT_SPAWN_SPEED,
            move_speed: INIT_MOVE_INTERVAL,
            move_timer: INIT_MOVE_INTERVAL,
            ramp_timer: RAMP_INTERVAL,
            ramp_index: 0,
            terminal: false,
        }
    }

    fn reset(&mut self, _rng: &mut RandomState) {
        *self = Self::new(self.ramping);
    }

    fn act(&mut self, action: u8, rng: &mut RandomState) -> (i32, bool) {
        let mut reward = 0;
        if self.terminal {
            return (reward, true);
        }
        if self.spawn_timer == 0 {
            self.spawn_entity(rng);
            self.spawn_timer = self.spawn_speed;
        }
        match action {
            LEFT => self.player_x = (self.player_x - 1).max(0),
            RIGHT => self.player_x = (self.player_x + 1).min(9),
            UP => self.player_y = (self.player_y - 1).max(1),
            DOWN => self.player_y = (self.player_y + 1).min(8),
            _ => {}
        }

        for slot in 0..self.entities.len() {
            self.touch(slot, &mut reward);
        }
        if self.move_timer == 0 {
            self.move_timer = self.move_speed;
            for slot in 0..self.entities.len() {
                if let Some(mut e) = self.entities[slot] {
                    e.x += if e.moves_right { 1 } else { -1 };
                    if e.x < 0 || e.x > 9 {
                        // Off screen: it cannot be on the player's cell.
                        self.entities[slot] = None;
                    } else {
                        self.entities[slot] = Some(e);
                        self.touch(slot, &mut reward);
                    }
                }
            }
        }

        self.spawn_timer -= 1;
        self.move_timer -= 1;

        if self.ramping && (self.spawn_speed > 1 || self.move_speed > 1) {
            if self.ramp_timer >= 0 {
                self.ramp_timer -= 1;
            } else {
                if self.move_speed > 1 && self.ramp_index % 2 != 0 {
                    self.move_speed -= 1;
                }
                if self.spawn_speed > 1 {
                    self.spawn_speed -= 1;
                }
                self.ramp_index += 1;
                self.ramp_timer = RAMP_INTERVAL;
            }
        }
        (reward, self.terminal)
    }

    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>) {
        frame.set(self.player_y, self.player_x, PLAYER);
        for e in self.entities.iter().flatten() {
            frame.set(e.y, e.x, if e.gold { GOLD } else { ENEMY });
            let back_x = if e.moves_right { e.x - 1 } else { e.x + 1 };
            if (0..=9).contains(&back_x) {
                frame.set(e.y, back_x, TRAIL);
            }
        }
    }
}
