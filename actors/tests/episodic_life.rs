//! Episodic life: a life lost ends the unroll's episode for learning
//! (`terminated` in the unroll) while the game goes on, so the episode the
//! actors report is the whole game with its true score.

mod common;

use cml_actors::Worker;
use cml_envs::{EnvError, Space, VecActions, VecStepOutput, VectorEnv};
use cml_policy::NetConfig;
use cml_proto::unroll::TERMINATED;

/// One game of 3 lives: a life is lost every 2 steps (steps 2 and 4 are
/// life losses, step 6 the game's end), reward 1 a step, then a new game.
/// The observation counts the game's steps (it goes on across lives).
struct ThreeLives {
    observation_space: Space,
    action_space: Space,
    output: VecStepOutput,
    step_in_game: u32,
}

impl VectorEnv for ThreeLives {
    fn num_envs(&self) -> usize {
        1
    }
    fn observation_space(&self) -> &Space {
        &self.observation_space
    }
    fn action_space(&self) -> &Space {
        &self.action_space
    }
    fn reset(&mut self, _seed: Option<u64>) -> Result<(), EnvError> {
        self.step_in_game = 0;
        let out = self.output.buffers_mut();
        out.observations[0] = 0.0;
        out.terminated[0] = false;
        out.life_lost[0] = false;
        Ok(())
    }
    fn step(&mut self, _actions: VecActions<'_>) -> Result<(), EnvError> {
        self.step_in_game += 1;
        let n = self.step_in_game;
        let out = self.output.buffers_mut();
        out.rewards[0] = 1.0;
        out.truncated[0] = false;
        out.terminated[0] = n % 2 == 0;
        out.life_lost[0] = n == 2 || n == 4;
        out.final_observations[0] = n as f32;
        if n == 6 {
            self.step_in_game = 0;
        }
        out.observations[0] = self.step_in_game as f32;
        Ok(())
    }
    fn output(&self) -> &VecStepOutput {
        &self.output
    }
}

#[test]
fn a_life_lost_is_a_termination_for_learning_and_the_game_is_the_episode() {
    let env = ThreeLives {
        observation_space: Space::bounded(vec![0.0], vec![10.0], vec![1]),
        action_space: Space::Discrete(2),
        output: VecStepOutput::new(1, 1),
        step_in_game: 0,
    };
    let t = 12;
    let mut worker = Worker::new(0, Box::new(env), t, 0, 1, &NetConfig::default(), None).unwrap();
    let policy = common::fresh_policy(&worker, &[1], 2, &NetConfig::default());
    let mut chunk = worker.new_chunk();
    worker.fill(&policy, &mut chunk).unwrap();
    // Terminations at steps 2, 4, 6 of each game (indices 1, 3, 5, 7, 9, 11).
    let terminated: Vec<u8> = chunk.frames[TERMINATED].clone();
    assert_eq!(terminated, vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    // Two whole games of 6 steps and return 6, not six lives of 2.
    let games: Vec<(f64, u64)> = chunk.episodes.iter().map(|e| (e.episode_return, e.length)).collect();
    assert_eq!(games, vec![(6.0, 6), (6.0, 6)]);
    // The observations go on across a life lost: x_2 (after step 2) is 2.
    let observations: Vec<f32> = cml_proto::tensor::f32s(&chunk.frames[cml_proto::unroll::OBSERVATIONS]).collect();
    assert_eq!(&observations[..8], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 1.0]);
}
