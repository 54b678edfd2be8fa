//! Spawns and joins many empty tasks, for profiling the per-task cost:
//! `cargo run --release --example spawn_profile -- 1000000`.

use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tally::Runtime::builder().workers(2).build().unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let outer = tally::Nursery::new();
        let handle = outer
            .try_spawn(async move {
                let nursery = tally::Nursery::new();
                for i in 0..n {
                    let h = nursery.try_spawn(async move { i }).unwrap();
                    assert_eq!(h.await.unwrap(), i);
                }
            })
            .unwrap();
        handle.await.unwrap();
    });
    let took = start.elapsed();
    println!("{n} spawn+join in {took:?}: {:?} each", took / n as u32);
}
