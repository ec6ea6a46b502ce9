//! MinAtar Seaquest (minatar/environments/seaquest.py, 1.0.15).
//!
//! A two-cell submarine shoots fish and enemy submarines (+1 each), picks up
//! divers, and must surface with a diver on board before its oxygen runs
//! out; surfacing with six divers pays out the remaining oxygen. Enemy subs
//! shoot. With difficulty ramping, each surfacing speeds enemies up.
//! Channels: sub front, sub back, friendly bullet, trail, enemy bullet, enemy
//! fish, enemy sub, oxygen gauge, diver gauge, diver.
//!
//! The Python keeps its objects in lists and walks them with
//! `reversed(list)` while removing from them with `list.remove(value)`, which
//! removes the *first equal* element, not necessarily the one in hand. Both
//! are reproduced exactly ([`ReversedIndices`], [`remove_first_equal`]),
//! including an enemy sub that fires after it was removed in the same step.

use super::random_state::RandomState;
use super::{Frame, Game, ObsCell, DOWN, FIRE, LEFT, RIGHT, UP};

const MAX_OXYGEN: i32 = 200;
const INIT_SPAWN_SPEED: i32 = 20;
const DIVER_SPAWN_SPEED: i32 = 30;
const INIT_MOVE_INTERVAL: i32 = 5;
const SHOT_COOL_DOWN: i32 = 5;
const ENEMY_SHOT_INTERVAL: i32 = 10;
const DIVER_MOVE_INTERVAL: i32 = 5;

const SUB_FRONT: usize = 0;
const SUB_BACK: usize = 1;
const FRIENDLY_BULLET: usize = 2;
const TRAIL: usize = 3;
const ENEMY_BULLET: usize = 4;
const ENEMY_FISH: usize = 5;
const ENEMY_SUB: usize = 6;
const OXYGEN_GAUGE: usize = 7;
const DIVER_GAUGE: usize = 8;
const DIVER: usize = 9;

/// Room reserved for each list, far above what a game reaches (an enemy
/// lives at most 60 frames and at most one spawns per frame), so stepping
/// does not allocate.
const LIST_CAPACITY: usize = 128;

/// `[x, y, moves right]`.
type Bullet = [i32; 3];
/// `[x, y, moves right, frames until it moves]`.
type Fish = [i32; 4];
/// `[x, y, moves right, frames until it moves, frames until it shoots]`.
type Sub = [i32; 5];
/// `[x, y, moves right, frames until it moves]`.
type Diver = [i32; 4];

/// Python's `reversed(list)` iterator: it keeps an index and reads the
/// list's current length at every step, so removals during the walk change
/// what it visits exactly as in Python.
struct ReversedIndices {
    next: isize,
}

impl ReversedIndices {
    fn new(len: usize) -> Self {
        ReversedIndices { next: len as isize - 1 }
    }

    fn next(&mut self, len: usize) -> Option<usize> {
        if self.next >= 0 && (self.next as usize) < len {
            let index = self.next as usize;
            self.next -= 1;
            Some(index)
        } else {
            self.next = -1;
            None
        }
    }
}

/// Python's `list.remove(value)`: removes the first element equal to
/// `value`; returns its index.
fn remove_first_equal<const N: usize>(list: &mut Vec<[i32; N]>, value: &[i32; N]) -> Option<usize> {
    let index = list.iter().position(|item| item == value)?;
    list.remove(index);
    Some(index)
}

/// Where the object that was at `at` is after `removed` was taken out
/// (`None`: it was the one removed).
fn after_removal(at: Option<usize>, removed: Option<usize>) -> Option<usize> {
    match (at, removed) {
        (Some(a), Some(r)) if r == a => None,
        (Some(a), Some(r)) if r < a => Some(a - 1),
        (at, _) => at,
    }
}

/// Writes `value` back to the list if the object is still in it.
fn store<const N: usize>(list: &mut [[i32; N]], at: Option<usize>, value: [i32; N]) {
    if let Some(slot) = at.and_then(|a| list.get_mut(a)) {
        *slot = value;
    }
}

fn step_x(moves_right: i32) -> i32 {
    if moves_right != 0 {
        1
    } else {
        -1
    }
}

fn off_screen(x: i32) -> bool {
    !(0..=9).contains(&x)
}

/// Python's slice bounds `[start:stop]` over a row of 10.
fn slice_bounds(start: i32, stop: i32) -> (i32, i32) {
    let clamp = |i: i32| if i < 0 { (i + 10).max(0) } else { i.min(10) };
    (clamp(start), clamp(stop))
}

/// Seaquest's game state.
#[derive(Clone, Debug)]
pub struct Seaquest {
    ramping: bool,
    oxygen: i32,
    /// Goes to −1 after surfacing with six divers, as in the Python.
    diver_count: i32,
    sub_x: i32,
    sub_y: i32,
    /// True when facing right.
    sub_or: bool,
    f_bullets: Vec<Bullet>,
    e_bullets: Vec<Bullet>,
    e_fish: Vec<Fish>,
    e_subs: Vec<Sub>,
    divers: Vec<Diver>,
    e_spawn_speed: i32,
    e_spawn_timer: i32,
    d_spawn_timer: i32,
    move_speed: i32,
    ramp_index: i32,
    shot_timer: i32,
    surface: bool,
    terminal: bool,
}

impl Seaquest {
    fn at_sub(&self, x: i32, y: i32) -> bool {
        x == self.sub_x && y == self.sub_y
    }

    /// `_spawn_enemy`: no spawn into a row where something moves the other
    /// way.
    fn spawn_enemy(&mut self, rng: &mut RandomState) {
        let lr = i32::from(rng.rand() < 0.5);
        let is_sub = rng.rand() < 1.0 / 3.0;
        let x = if lr != 0 { 0 } else { 9 };
        let y = rng.randint(1, 9) as i32;
        let mut rows = self
            .e_subs
            .iter()
            .map(|z| (z[1], z[2]))
            .chain(self.e_fish.iter().map(|z| (z[1], z[2])));
        if rows.any(|(zy, zlr)| zy == y && zlr != lr) {
            return;
        }
        if is_sub {
            self.e_subs.push([x, y, lr, self.move_speed, ENEMY_SHOT_INTERVAL]);
        } else {
            self.e_fish.push([x, y, lr, self.move_speed]);
        }
    }

    fn spawn_diver(&mut self, rng: &mut RandomState) {
        let lr = i32::from(rng.rand() < 0.5);
        let x = if lr != 0 { 0 } else { 9 };
        let y = rng.randint(1, 9) as i32;
        self.divers.push([x, y, lr, DIVER_MOVE_INTERVAL]);
    }

    /// `_surface`: with six divers, pays out the oxygen; refills oxygen,
    /// drops a diver, ramps the difficulty.
    fn surface(&mut self) -> i32 {
        self.surface = true;
        let reward = if self.diver_count == 6 {
            self.diver_count = 0;
            (self.oxygen * 10).div_euclid(MAX_OXYGEN)
        } else {
            0
        };
        self.oxygen = MAX_OXYGEN;
        self.diver_count -= 1;
        if self.ramping && (self.e_spawn_speed > 1 || self.move_speed > 2) {
            if self.move_speed > 2 && self.ramp_index % 2 != 0 {
                self.move_speed -= 1;
            }
            if self.e_spawn_speed > 1 {
                self.e_spawn_speed -= 1;
            }
            self.ramp_index += 1;
        }
        reward
    }

    fn update_friendly_bullets(&mut self, reward: &mut i32) {
        let mut walk = ReversedIndices::new(self.f_bullets.len());
        while let Some(i) = walk.next(self.f_bullets.len()) {
            let mut bullet = self.f_bullets[i];
            bullet[0] += step_x(bullet[2]);
            self.f_bullets[i] = bullet;
            if off_screen(bullet[0]) {
                remove_first_equal(&mut self.f_bullets, &bullet);
            } else if let Some(k) = self.e_fish.iter().position(|f| f[0] == bullet[0] && f[1] == bullet[1]) {
                self.e_fish.remove(k);
                remove_first_equal(&mut self.f_bullets, &bullet);
                *reward += 1;
            } else if let Some(k) = self.e_subs.iter().position(|s| s[0] == bullet[0] && s[1] == bullet[1]) {
                self.e_subs.remove(k);
                remove_first_equal(&mut self.f_bullets, &bullet);
                *reward += 1;
            }
        }
    }

    fn update_divers(&mut self) {
        let mut walk = ReversedIndices::new(self.divers.len());
        while let Some(i) = walk.next(self.divers.len()) {
            let mut diver = self.divers[i];
            if self.at_sub(diver[0], diver[1]) && self.diver_count < 6 {
                remove_first_equal(&mut self.divers, &diver);
                self.diver_count += 1;
            } else if diver[3] == 0 {
                diver[3] = DIVER_MOVE_INTERVAL;
                diver[0] += step_x(diver[2]);
                self.divers[i] = diver;
                if off_screen(diver[0]) {
                    remove_first_equal(&mut self.divers, &diver);
                } else if self.at_sub(diver[0], diver[1]) && self.diver_count < 6 {
                    remove_first_equal(&mut self.divers, &diver);
                    self.diver_count += 1;
                }
            } else {
                diver[3] -= 1;
                self.divers[i] = diver;
            }
        }
    }

    /// The first friendly bullet on cell `(x, y)`.
    fn friendly_bullet_at(&self, x: i32, y: i32) -> Option<usize> {
        self.f_bullets.iter().position(|b| b[0] == x && b[1] == y)
    }

    fn update_enemy_subs(&mut self, reward: &mut i32) {
        let mut walk = ReversedIndices::new(self.e_subs.len());
        while let Some(i) = walk.next(self.e_subs.len()) {
            let mut sub = self.e_subs[i];
            let mut at = Some(i);
            if self.at_sub(sub[0], sub[1]) {
                self.terminal = true;
            }
            if sub[3] == 0 {
                sub[3] = self.move_speed;
                sub[0] += step_x(sub[2]);
                store(&mut self.e_subs, at, sub);
                if off_screen(sub[0]) {
                    at = after_removal(at, remove_first_equal(&mut self.e_subs, &sub));
                } else if self.at_sub(sub[0], sub[1]) {
                    self.terminal = true;
                } else if let Some(k) = self.friendly_bullet_at(sub[0], sub[1]) {
                    at = after_removal(at, remove_first_equal(&mut self.e_subs, &sub));
                    self.f_bullets.remove(k);
                    *reward += 1;
                }
            } else {
                sub[3] -= 1;
                store(&mut self.e_subs, at, sub);
            }
            // A sub removed above still fires if its timer is up.
            if sub[4] == 0 {
                sub[4] = ENEMY_SHOT_INTERVAL;
                store(&mut self.e_subs, at, sub);
                self.e_bullets.push([sub[0], sub[1], sub[2]]);
            } else {
                sub[4] -= 1;
                store(&mut self.e_subs, at, sub);
            }
        }
    }

    fn update_enemy_bullets(&mut self) {
        let mut walk = ReversedIndices::new(self.e_bullets.len());
        while let Some(i) = walk.next(self.e_bullets.len()) {
            let mut bullet = self.e_bullets[i];
            if self.at_sub(bullet[0], bullet[1]) {
                self.terminal = true;
            }
            bullet[0] += step_x(bullet[2]);
            self.e_bullets[i] = bullet;
            if off_screen(bullet[0]) {
                remove_first_equal(&mut self.e_bullets, &bullet);
            } else if self.at_sub(bullet[0], bullet[1]) {
                self.terminal = true;
            }
        }
    }

    fn update_enemy_fish(&mut self, reward: &mut i32) {
        let mut walk = ReversedIndices::new(self.e_fish.len());
        while let Some(i) = walk.next(self.e_fish.len()) {
            let mut fish = self.e_fish[i];
            if self.at_sub(fish[0], fish[1]) {
                self.terminal = true;
            }
            if fish[3] == 0 {
                fish[3] = self.move_speed;
                fish[0] += step_x(fish[2]);
                self.e_fish[i] = fish;
                if off_screen(fish[0]) {
                    remove_first_equal(&mut self.e_fish, &fish);
                } else if self.at_sub(fish[0], fish[1]) {
                    self.terminal = true;
                } else if let Some(k) = self.friendly_bullet_at(fish[0], fish[1]) {
                    remove_first_equal(&mut self.e_fish, &fish);
                    self.f_bullets.remove(k);
                    *reward += 1;
                }
            } else {
                fish[3] -= 1;
                self.e_fish[i] = fish;
            }
        }
    }
}

impl Game for Seaquest {
    const NAME: &'static str = "Seaquest";
    const CHANNELS: usize = 10;
    const MINIMAL_ACTIONS: &'static [u8] = &[super::NOOP, LEFT, UP, RIGHT, DOWN, FIRE];

    fn new(difficulty_ramping: bool) -> Self {
        Seaquest {
            ramping: difficulty_ramping,
            oxygen: MAX_OXYGEN,
            diver_count: 0,
            sub_x: 5,
            sub_y: 0,
            sub_or: false,
            f_bullets: Vec::with_capacity(LIST_CAPACITY),
            e_bullets: Vec::with_capacity(LIST_CAPACITY),
            e_fish: Vec::with_capacity(LIST_CAPACITY),
            e_subs: Vec::with_capacity(LIST_CAPACITY),
            divers: Vec::with_capacity(LIST_CAPACITY),
            e_spawn_speed: INIT_SPAWN_SPEED,
            e_spawn_timer: INIT_SPAWN_SPEED,
            d_spawn_timer: DIVER_SPAWN_SPEED,
            move_speed: INIT_MOVE_INTERVAL,
            ramp_index: 0,
            shot_timer: 0,
            surface: true,
            terminal: false,
        }
    }

    fn reset(&mut self, _rng: &mut RandomState) {
        self.oxygen = MAX_OXYGEN;
        self.diver_count = 0;
        self.sub_x = 5;
        self.sub_y = 0;
        self.sub_or = false;
        self.f_bullets.clear();
        self.e_bullets.clear();
        self.e_fish.clear();
        self.e_subs.clear();
        self.divers.clear();
        self.e_spawn_speed = INIT_SPAWN_SPEED;
        self.e_spawn_timer = INIT_SPAWN_SPEED;
        self.d_spawn_timer = DIVER_SPAWN_SPEED;
        self.move_speed = INIT_MOVE_INTERVAL;
        self.ramp_index = 0;
        self.shot_timer = 0;
        self.surface = true;
        self.terminal = false;
    }

    fn act(&mut self, action: u8, rng: &mut RandomState) -> (i32, bool) {
        let mut reward = 0;
        if self.terminal {
            return (reward, true);
        }
        if self.e_spawn_timer == 0 {
            self.spawn_enemy(rng);
            self.e_spawn_timer = self.e_spawn_speed;
        }
        if self.d_spawn_timer == 0 {
            self.spawn_diver(rng);
            self.d_spawn_timer = DIVER_SPAWN_SPEED;
        }

        if action == FIRE && self.shot_timer == 0 {
            self.f_bullets.push([self.sub_x, self.sub_y, i32::from(self.sub_or)]);
            self.shot_timer = SHOT_COOL_DOWN;
        } else if action == LEFT {
            self.sub_x = (self.sub_x - 1).max(0);
            self.sub_or = false;
        } else if action == RIGHT {
            self.sub_x = (self.sub_x + 1).min(9);
            self.sub_or = true;
        } else if action == UP {
            self.sub_y = (self.sub_y - 1).max(0);
        } else if action == DOWN {
            self.sub_y = (self.sub_y + 1).min(8);
        }

        self.update_friendly_bullets(&mut reward);
        self.update_divers();
        self.update_enemy_subs(&mut reward);
        self.update_enemy_bullets();
        self.update_enemy_fish(&mut reward);

        if self.e_spawn_timer > 0 {
            self.e_spawn_timer -= 1;
        }
        if self.d_spawn_timer > 0 {
            self.d_spawn_timer -= 1;
        }
        if self.shot_timer > 0 {
            self.shot_timer -= 1;
        }
        if self.oxygen <= 0 {
            self.terminal = true;
        }
        if self.sub_y > 0 {
            self.oxygen -= 1;
            self.surface = false;
        } else if !self.surface {
            if self.diver_count == 0 {
                self.terminal = true;
            } else {
                reward += self.surface();
            }
        }
        (reward, self.terminal)
    }

    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>) {
        frame.set(self.sub_y, self.sub_x, SUB_FRONT);
        let back_x = if self.sub_or { self.sub_x - 1 } else { self.sub_x + 1 };
        frame.set(self.sub_y, back_x, SUB_BACK);
        let (start, stop) = slice_bounds(0, self.oxygen.max(0) * 10 / MAX_OXYGEN);
        for x in start..stop {
            frame.set(9, x, OXYGEN_GAUGE);
        }
        let (start, stop) = slice_bounds(9 - self.diver_count, 9);
        for x in start..stop {
            frame.set(9, x, DIVER_GAUGE);
        }
        for b in &self.f_bullets {
            frame.set(b[1], b[0], FRIENDLY_BULLET);
        }
        for b in &self.e_bullets {
            frame.set(b[1], b[0], ENEMY_BULLET);
        }
        let with_trail = |frame: &mut Frame<'_, T>, e: &[i32], channel: usize| {
            frame.set(e[1], e[0], channel);
            let back_x = if e[2] != 0 { e[0] - 1 } else { e[0] + 1 };
            if (0..=9).contains(&back_x) {
                frame.set(e[1], back_x, TRAIL);
            }
        };
        for fish in &self.e_fish {
            with_trail(frame, fish, ENEMY_FISH);
        }
        for sub in &self.e_subs {
            with_trail(frame, sub, ENEMY_SUB);
        }
        for diver in &self.divers {
            with_trail(frame, diver, DIVER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_helpers_follow_python() {
        // reversed() over a list that loses an element ahead of the walk
        // visits the element that slid into the freed index again.
        let mut list: Vec<[i32; 1]> = vec![[7], [7], [3]];
        let mut walk = ReversedIndices::new(list.len());
        let mut seen = Vec::new();
        while let Some(i) = walk.next(list.len()) {
            seen.push(list[i][0]);
            if list[i][0] == 7 && seen.len() == 2 {
                // list.remove(7) takes index 0, not index 1.
                assert_eq!(remove_first_equal(&mut list, &[7]), Some(0));
            }
        }
        assert_eq!(seen, [3, 7, 7]);
        assert_eq!(after_removal(Some(2), Some(0)), Some(1));
        assert_eq!(after_removal(Some(2), Some(2)), None);
        assert_eq!(after_removal(Some(2), Some(3)), Some(2));
        assert_eq!(slice_bounds(10, 9), (10, 9));
        assert_eq!(slice_bounds(0, 10), (0, 10));
        assert_eq!(slice_bounds(-3, 9), (7, 9));
    }
}
