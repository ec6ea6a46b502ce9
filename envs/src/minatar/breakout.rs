//! MinAtar Breakout (minatar/environments/breakout.py, 1.0.15).
//!
//! A paddle on the bottom row bounces a ball that travels on diagonals into
//! three rows of bricks; +1 per brick; the bricks come back when all are
//! gone; the episode ends when the ball reaches the bottom row past the
//! paddle. Channels: paddle, ball, trail (the ball's last cell), brick.

use super::random_state::RandomState;
use super::{Frame, Game, ObsCell, LEFT, RIGHT};

const PADDLE: usize = 0;
const BALL: usize = 1;
const TRAIL: usize = 2;
const BRICK: usize = 3;

/// Breakout's game state.
#[derive(Clone, Debug, Default)]
pub struct Breakout {
    ball_x: i32,
    ball_y: i32,
    /// 0: up-left, 1: up-right, 2: down-right, 3: down-left.
    ball_dir: usize,
    pos: i32,
    /// One bit per cell, bit x of row y.
    bricks: [u16; 10],
    strike: bool,
    last_x: i32,
    last_y: i32,
    terminal: bool,
}

impl Breakout {
    const FULL_ROW: u16 = (1 << 10) - 1;

    fn refill_bricks(&mut self) {
        self.bricks[1..4].fill(Self::FULL_ROW);
    }

    fn brick(&self, y: i32, x: i32) -> bool {
        self.bricks[y as usize] & (1 << x) != 0
    }
}

impl Game for Breakout {
    const NAME: &'static str = "Breakout";
    const CHANNELS: usize = 4;
    const MINIMAL_ACTIONS: &'static [u8] = &[super::NOOP, LEFT, RIGHT];

    fn new(_difficulty_ramping: bool) -> Self {
        Self::default()
    }

    fn reset(&mut self, rng: &mut RandomState) {
        self.ball_y = 3;
        let (x, dir) = if rng.randint(0, 2) == 0 { (0, 2) } else { (9, 3) };
        self.ball_x = x;
        self.ball_dir = dir;
        self.pos = 4;
        self.bricks = [0; 10];
        self.refill_bricks();
        self.strike = false;
        self.last_x = self.ball_x;
        self.last_y = self.ball_y;
        self.terminal = false;
    }

    fn act(&mut self, action: u8, _rng: &mut RandomState) -> (i32, bool) {
        let mut reward = 0;
        if self.terminal {
            return (reward, true);
        }
        match action {
            LEFT => self.pos = (self.pos - 1).max(0),
            RIGHT => self.pos = (self.pos + 1).min(9),
            _ => {}
        }

        self.last_x = self.ball_x;
        self.last_y = self.ball_y;
        let (dx, dy) = [(-1, -1), (1, -1), (1, 1), (-1, 1)][self.ball_dir];
        let mut new_x = self.ball_x + dx;
        let mut new_y = self.ball_y + dy;

        let mut strike_toggle = false;
        if !(0..=9).contains(&new_x) {
            new_x = new_x.clamp(0, 9);
            self.ball_dir = [1, 0, 3, 2][self.ball_dir];
        }
        if new_y < 0 {
            new_y = 0;
            self.ball_dir = [3, 2, 1, 0][self.ball_dir];
        } else if self.brick(new_y, new_x) {
            strike_toggle = true;
            if !self.strike {
                reward += 1;
                self.strike = true;
                self.bricks[new_y as usize] &= !(1 << new_x);
                new_y = self.last_y;
                self.ball_dir = [3, 2, 1, 0][self.ball_dir];
            }
        } else if new_y == 9 {
            if self.bricks.iter().all(|&row| row == 0) {
                self.refill_bricks();
            }
            if self.ball_x == self.pos {
                self.ball_dir = [3, 2, 1, 0][self.ball_dir];
                new_y = self.last_y;
            } else if new_x == self.pos {
                self.ball_dir = [2, 3, 0, 1][self.ball_dir];
                new_y = self.last_y;
            } else {
                self.terminal = true;
            }
        }

        if !strike_toggle {
            self.strike = false;
        }
        self.ball_x = new_x;
        self.ball_y = new_y;
        (reward, self.terminal)
    }

    fn draw<T: ObsCell>(&self, frame: &mut Frame<'_, T>) {
        frame.set(self.ball_y, self.ball_x, BALL);
        frame.set(9, self.pos, PADDLE);
        frame.set(self.last_y, self.last_x, TRAIL);
        for (y, &row) in self.bricks.iter().enumerate() {
            let mut bits = row;
            while bits != 0 {
                frame.set(y as i32, bits.trailing_zeros() as i32, BRICK);
                bits &= bits - 1;
            }
        }
    }
}
