//! The sharded registry of a nursery's live tasks, which cancellation and
//! snapshots walk.
//!
//! Each thread inserts into a shard of its own choosing (by a per-thread
//! index), so spawns from different workers into one busy nursery do not all
//! queue on one lock; a removal locks only the shard its task went into.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use slab::Slab;

use crate::task::AnyTask;

/// Where a task sits in a registry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    shard: u32,
    key: u32,
}

pub(crate) struct Registry {
    shards: Box<[Mutex<Slab<AnyTask>>]>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// A small index per thread, handed out in order, to pick a shard with.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            // Relaxed: only uniqueness matters, not order.
            index.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        index.get()
    })
}

impl Registry {
    pub(crate) fn new(shards: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        Registry {
            shards: (0..shards).map(|_| Mutex::new(Slab::new())).collect(),
        }
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Slab<AnyTask>> {
        // Nothing that can panic runs under these locks; recover from poison
        // rather than spread a panic.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, task: AnyTask) -> Slot {
        let shard = thread_index() & (self.shards.len() - 1);
        let key = self.shard(shard).insert(task);
        Slot {
            shard: shard as u32,
            key: key as u32,
        }
    }

    pub(crate) fn remove(&self, slot: Slot) {
        // Taken out under the lock, dropped after it: the last reference to a
        // task may be this one.
        let removed = self
            .shard(slot.shard as usize)
            .try_remove(slot.key as usize);
        drop(removed);
    }

    /// Clones out every registered task, one shard at a time, so callers can
    /// act on them without holding a lock.
    pub(crate) fn tasks(&self) -> Vec<AnyTask> {
        let mut all = Vec::new();
        for index in 0..self.shards.len() {
            all.extend(self.shard(index).iter().map(|(_, t)| t.clone()));
        }
        all
    }
}
