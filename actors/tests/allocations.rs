//! No per-actor heap allocation in a worker's tick: the allocations of one
//! unroll (T ticks) are the same for 64 and for 1024 actors — they come from
//! the batched forward pass (a fixed number of tensors per tick), never from
//! stepping envs, drawing actions or writing unrolls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Device;
use candle_nn::VarMap;
use cml_actors::{policy_from_weights, Worker};
use cml_policy::{ActionKind, NetConfig, PolicyNet};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_per_unroll(actors: usize) -> u64 {
    let varmap = VarMap::new();
    PolicyNet::init(
        &varmap,
        4,
        ActionKind::Categorical(2),
        &NetConfig::default(),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let bytes = PolicyNet::to_safetensors(&varmap).unwrap();
    let venv = cml_envs::make_vec("CartPole-v1", &cml_envs::Params::new(), actors).unwrap();
    let mut worker = Worker::new(0, venv, 20, 0, 3, &NetConfig::default(), None).unwrap();
    let policy = policy_from_weights(
        &bytes,
        1,
        worker.layout(),
        worker.observation_shape(),
        &NetConfig::default(),
    )
    .unwrap();
    let mut chunk = worker.new_chunk();
    // Warm up (episode vectors grow to their working size).
    for _ in 0..5 {
        worker.fill(&policy, &mut chunk).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    worker.fill(&policy, &mut chunk).unwrap();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn allocations_do_not_grow_with_actors() {
    let small = allocations_per_unroll(64);
    let large = allocations_per_unroll(1024);
    eprintln!("allocations per unroll of 20 ticks: {small} with 64 actors, {large} with 1024 actors");
    // Per tick: candle's forward pass (about 340 small allocations for the
    // 3-layer MLP, measured); nothing per actor.
    assert!(small <= 20 * 400, "{small} allocations per unroll");
    assert!(
        large <= small + small / 10,
        "{large} allocations with 1024 actors vs {small} with 64"
    );
}
