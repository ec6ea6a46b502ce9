//! Stepping allocates nothing: every built-in env (classic control and
//! MinAtar), `EnvHandle`, `VecEnv` and the native `CartPoleVec`, through
//! many steps and autoresets, under an allocator that counts this thread's
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cml_envs::rng::NumpyRng;
use cml_envs::{make, make_vec, Action, Env, Params, Space, VecActions};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

const IDS: [&str; 15] = [
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Pendulum-v1",
    "MinAtar/Asterix-v1",
    "MinAtar/Breakout-v1",
    "MinAtar/Freeway-v1",
    "MinAtar/Seaquest-v1",
    "MinAtar/SpaceInvaders-v1",
    "MinAtar/Asterix-v0",
    "MinAtar/Breakout-v0",
    "MinAtar/Freeway-v0",
    "MinAtar/Seaquest-v0",
    "MinAtar/SpaceInvaders-v0",
];

#[test]
fn single_env_steps_allocate_nothing() {
    for id in IDS {
        let mut env = make(id, &Params::new()).expect("make");
        let space = env.action_space().clone();
        let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
        let mut rng = NumpyRng::from_seed(1);
        let mut cont = [0.0f32; 1];
        env.reset(Some(0), &mut obs).expect("reset");
        let before = allocations();
        let mut episodes = 0;
        for _ in 0..5000 {
            let action = match &space {
                Space::Discrete(n) => Action::Discrete(rng.below(*n as u64) as i64),
                Space::Box { .. } => {
                    cont[0] = rng.uniform(-1.0, 1.0) as f32;
                    Action::Continuous(&cont)
                }
            };
            if env.step(action, &mut obs).expect("step").done() {
                env.reset(None, &mut obs).expect("reset");
                episodes += 1;
            }
        }
        assert_eq!(allocations() - before, 0, "{id} allocated while stepping");
        assert!(episodes > 0, "{id}: episodes ended and were reset");
    }
}

#[test]
fn vector_steps_allocate_nothing() {
    for id in IDS {
        let mut venv = make_vec(id, &Params::new(), 64).expect("make_vec");
        let discrete = venv.action_space().is_discrete();
        let n = venv.num_envs();
        let mut disc = vec![0i64; n];
        let cont = vec![0.25f32; n];
        venv.reset(Some(0)).expect("reset");
        let before = allocations();
        for t in 0..1000 {
            for (i, a) in disc.iter_mut().enumerate() {
                *a = ((i + t) % 2) as i64;
            }
            let actions = if discrete {
                VecActions::Discrete(&disc)
            } else {
                VecActions::Continuous(&cont)
            };
            venv.step(actions).expect("step");
        }
        assert_eq!(allocations() - before, 0, "{id} vector allocated while stepping");
    }
}
