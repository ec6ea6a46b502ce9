//! MinAtar SpaceInvaders (minatar/environments/space_invaders.py, 1.0.15).
//!
//! A cannon on the bottom row shoots up at a block of aliens that moves
//! sideways and steps down at the edges; the alien nearest the cannon shoots
//! back; +1 per alien hit; a new, faster wave when one is cleared; the episode
//! ends when an alien or a bullet reaches the cannon. No randomness at all.
//! Channels: cannon, alien, alien moving left, alien moving right, friendly
//! bullet, enemy bullet.

use super::random_state::RandomState;
use super::{Frame, Game, ObsCell, FIRE, LEFT, RIGHT};

const SHOT_COOL_DOWN: i32 = 5;
const ENEMY_MOVE_INTERVAL: i32 = 12;
const ENEMY_SHOT_INTERVAL: i32 = 10;
const CANNON: usize = 0;
const ALIEN: usize = 1;
const ALIEN_LEFT: usize = 2;
const ALIEN_RIGHT: usize = 3;
const FRIENDLY_BULLET: usize = 4;
const ENEMY_BULLET: usize = 5;

type Map = [[bool; 10]; 10];

/// `np.roll(map, shift, axis=0)`: row y moves to row y + shift (mod 10).
fn roll_rows(map: &Map, shift: i32) -> Map {
    std::array::from_fn(|y| map[(y as i32 - shift).rem_euclid(10) as usize])
}

/// `np.roll(map, shift, axis=1)`: column x moves to column x + shift (mod 10).
fn roll_columns(map: &Map, shift: i32) -> Map {
    std::array::from_fn(|y| std::array::from_fn(|x| map[y][(x as i32 - shift).rem_euclid(10) as usize]))
}

fn count(map: &Map) -> i32 {
    map.iter().flatten().filter(|&&c| c).count() as i32
}

fn column_has(map: &Map, x: usize) -> bool {
    map.iter().any(|row| row[x])
}

/// SpaceInvaders' game state.
#[derive(Clone, Debug)]
pub struct SpaceInvaders {
    ramping: bool,
    pos: i32,
    friendly_bullets: Map,
    enemy_bullets: Map,
    aliens: Map,
    alien_dir: i32,
    enemy_move_interval: i32,
    alien_move_timer: i32,
    alien_shot_timer: i32,
    ramp_index: i32,
    shot_timer: i32,
    terminal: bool,
}

impl SpaceInvaders {
    fn new_wave(map: &mut Map) {
        for row in &mut map[0..4] {
            row[2..8].fill(true);
        }
    }

    /// `_nearest_alien`: columns by distance to `pos` (ties: the left one
    /// first, as Python's stable sort), the lowest alien of the first column
    /// that has one.
    fn nearest_alien(&self) -> Option<(usize, usize)> {
        let lowest_in = |x: i32| -> Option<(usize, usize)> {
            let x = usize::try_from(x).ok().filter(|&x| x < 10)?;
            (0..10).rev().find(|&y| self.aliens[y][x]).map(|y| (y, x))
        };
        (0..10).find_map(|d| lowest_in(self.pos - d).or_else(|| if d > 0 { lowest_in(self.pos + d) } else { None }))
    }
}

impl Game for SpaceInvaders {
    const NAME: &'static str = "SpaceInvaders";
    const CHANNELS: usize = 6;
    const MINIMAL_ACTIONS: &'static [u8] = &[super::NOOP, LEFT, RIGHT, FIRE];

    fn new(difficulty_ramping: bool) -> Self {
        let mut aliens = [[false; 10]; 10];
        Self::new_wave(&mut aliens);
        SpaceInvaders {
            ramping: difficulty_ramping,
            pos: 5,
            friendly_bullets: [[false; 10]; 10],
            enemy_bullets: [[false; 10]; 10],
            aliens,
            alien_dir: -1,
            enemy_move_interval: ENEMY_MOVE_INTERVAL,
            alien_move_timer: ENEMY_MOVE_INTERVAL,
            alien_shot_timer: ENEMY_SHOT_INTERVAL,
            ramp_index: 0,
            shot_timer: 0,
            terminal: false,
        }
    }

    fn reset(&mut self, _rng: &mut RandomState) {
        *self = Self::new(self.ramping);
    }

    fn act(&mut self, action: u8, _rng: &mut RandomState) -> (i32, bool) {
        let mut reward = 0;
        if self.terminal {
            return (reward, true);
        }
        if action == FIRE && self.shot_timer == 0 {
            self.friendly_bullets[9][self.pos as usize] = true;
            self.shot_timer = SHOT_COOL_DOWN;
        } else if action == LEFT {
            self.pos = (self.pos - 1).max(0);
        } else if action == RIGHT {
            self.pos = (self.pos + 1).min(9);
        }
        let pos = self.pos as usize;

        // Friendly bullets move up, enemy bullets down.
        self.friendly_bullets = roll_rows(&self.friendly_bullets, -1);
        self.friendly_bullets[9] = [false; 10];
        self.enemy_bullets = roll_rows(&self.enemy_bullets, 1);
        self.enemy_bullets[0] = [false; 10];
        if self.enemy_bullets[9][pos] {
            self.terminal = true;
        }

        if self.aliens[9][pos] {
            self.terminal = true;
        }
        if self.alien_move_timer == 0 {
            self.alien_move_timer = count(&self.aliens).min(self.enemy_move_interval);
            if (column_has(&self.aliens, 0) && self.alien_dir < 0)
                || (column_has(&self.aliens, 9) && self.alien_dir > 0)
            {
                self.alien_dir = -self.alien_dir;
                if self.aliens[9].iter().any(|&a| a) {
                    self.terminal = true;
                }
                self.aliens = roll_rows(&self.aliens, 1);
            } else {
                self.aliens = roll_columns(&self.aliens, self.alien_dir);
            }
            if self.aliens[9][pos] {
                self.terminal = true;
            }
        }
        if self.alien_shot_timer == 0 {
            self.alien_shot_timer = ENEMY_SHOT_INTERVAL;
            // There is always an alien here: a cleared wave is refilled at
            // the end of the step that cleared it.
            if let Some((y, x)) = self.nearest_alien() {
                self.enemy_bullets[y][x] = true;
            }
        }

        for (aliens, bullets) in self.aliens.iter_mut().zip(self.friendly_bullets.iter_mut()) {
            for (alien, bullet) in aliens.iter_mut().zip(bullets.iter_mut()) {
                if *alien && *bullet {
                    reward += 1;
                    *alien = false;
                    *bullet = false;
                }
            }
        }

        if self.shot_timer > 0 {
            self.shot_timer -= 1;
        }
        self.alien_move_timer -= 1;
        self.alien_shot_timer -= 1;
        if count(&self.aliens) == 0 {
            if self.enemy_move_interval > 6 && self.ramping {
                self.enemy_move_interval -= 1;
                self.ramp_index += 1;
            }
            Self::new_wave(&mut self.aliens);
        }
        (reward, self.terminal)
    }

    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>) {
        frame.set(9, self.pos, CANNON);
        let direction = if self.alien_dir < 0 { ALIEN_LEFT } else { ALIEN_RIGHT };
        for y in 0..10 {
            for x in 0..10 {
                let (yi, xi) = (y as i32, x as i32);
                if self.aliens[y][x] {
                    frame.set(yi, xi, ALIEN);
                    frame.set(yi, xi, direction);
                }
                if self.friendly_bullets[y][x] {
                    frame.set(yi, xi, FRIENDLY_BULLET);
                }
                if self.enemy_bullets[y][x] {
                    frame.set(yi, xi, ENEMY_BULLET);
                }
            }
        }
    }
}
