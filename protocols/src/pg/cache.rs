//! The statement cache of a connection: prepared statements by their SQL
//! and parameter types, least recently used evicted first, so a statement
//! is parsed once and then only bound and executed.

use std::collections::HashMap;
use std::sync::Arc;

use super::query::Column;

/// Prepared statements by their SQL and parameter types, least recently used
/// evicted first.
#[derive(Debug)]
pub(super) struct StatementCache {
    pub(super) capacity: usize,
    entries: HashMap<String, Vec<CacheEntry>>,
    len: usize,
    clock: u64,
    next_name: u64,
}

#[derive(Debug)]
struct CacheEntry {
    params: Vec<u32>,
    name: String,
    columns: Option<Arc<[Column]>>,
    used: u64,
}

impl StatementCache {
    pub(super) fn new(capacity: usize) -> Self {
        StatementCache {
            capacity,
            entries: HashMap::new(),
            len: 0,
            clock: 0,
            next_name: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn lookup(
        &mut self,
        sql: &str,
        params: &[u32],
    ) -> Option<(String, Option<Arc<[Column]>>)> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self
            .entries
            .get_mut(sql)?
            .iter_mut()
            .find(|e| e.params == params)?;
        entry.used = clock;
        Some((entry.name.clone(), entry.columns.clone()))
    }

    /// Adds a statement; returns its name and the name of one evicted to make room.
    pub(super) fn insert(&mut self, sql: &str, params: &[u32]) -> (String, Option<String>) {
        let evicted = if self.len >= self.capacity {
            self.evict_oldest()
        } else {
            None
        };
        self.clock += 1;
        self.next_name += 1;
        let name = format!("tally_s{}", self.next_name);
        self.entries
            .entry(sql.to_owned())
            .or_default()
            .push(CacheEntry {
                params: params.to_vec(),
                name: name.clone(),
                columns: None,
                used: self.clock,
            });
        self.len += 1;
        (name, evicted)
    }

    fn evict_oldest(&mut self) -> Option<String> {
        let (sql, name) = self
            .entries
            .iter()
            .flat_map(|(sql, list)| list.iter().map(move |e| (sql, e)))
            .min_by_key(|(_, e)| e.used)
            .map(|(sql, e)| (sql.clone(), e.name.clone()))?;
        self.remove_in(&sql, &name);
        Some(name)
    }

    fn remove_in(&mut self, sql: &str, name: &str) {
        if let Some(list) = self.entries.get_mut(sql) {
            let before = list.len();
            list.retain(|e| e.name != name);
            self.len -= before - list.len();
            if list.is_empty() {
                self.entries.remove(sql);
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) {
        if name.is_empty() {
            return;
        }
        let sql = self
            .entries
            .iter()
            .find(|(_, list)| list.iter().any(|e| e.name == name))
            .map(|(sql, _)| sql.clone());
        if let Some(sql) = sql {
            self.remove_in(&sql, name);
        }
    }

    pub(super) fn set_columns(&mut self, name: &str, columns: &Arc<[Column]>) {
        if name.is_empty() {
            return;
        }
        if let Some(e) = self.entries.values_mut().flatten().find(|e| e.name == name) {
            e.columns = Some(columns.clone());
        }
    }

    pub(super) fn columns_of(&self, name: &str) -> Option<Arc<[Column]>> {
        self.entries
            .values()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.columns.clone())
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.len = 0;
    }

    /// Removes the statements whose description never arrived; returns their names.
    pub(super) fn take_unconfirmed(&mut self) -> Vec<String> {
        let names: Vec<String> = self
            .entries
            .values()
            .flatten()
            .filter(|e| e.columns.is_none())
            .map(|e| e.name.clone())
            .collect();
        for name in &names {
            self.remove(name);
        }
        names
    }
}
