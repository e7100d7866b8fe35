//! A recorded history of client operations and a linearizability checker for it.
//!
//! Per username the model is one register: absent, or holding the current password.
//! `register` creates it if absent, `login(p)` reads it, `change_password(a→b)` is a
//! compare-and-set. Every operation has an invocation and a completion time; an
//! operation whose outcome is unknown (timeout, node died) may have taken effect at any
//! point after its invocation, or never. The checker (Wing & Gong's search with
//! memoisation, as in Lowe's and Knossos' checkers) looks for an order of the
//! operations that respects real time and the model.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Register(String),
    Login(String),
    ChangePassword(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Definitely refused by the model (`user_exists`, `invalid_credentials`).
    Rejected,
    /// May or may not have taken effect.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub op: Op,
    pub outcome: Outcome,
    pub invoke_us: u64,
    /// `u64::MAX` when the outcome is unknown.
    pub complete_us: u64,
}

type State = Option<String>;

/// The states the model can be in after `op` with `outcome` from `state` (none: the
/// outcome is impossible there).
fn step(state: &State, op: &Op, outcome: Outcome) -> Vec<State> {
    match (op, outcome) {
        (Op::Register(p), Outcome::Ok) => match state {
            None => vec![Some(p.clone())],
            Some(_) => vec![],
        },
        (Op::Register(_), Outcome::Rejected) => match state {
            Some(_) => vec![state.clone()],
            None => vec![],
        },
        (Op::Register(p), Outcome::Unknown) => match state {
            None => vec![None, Some(p.clone())],
            Some(_) => vec![state.clone()],
        },
        (Op::Login(p), Outcome::Ok) => {
            if state.as_ref() == Some(p) {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Op::Login(p), Outcome::Rejected) => {
            if state.as_ref() != Some(p) {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Op::Login(_), Outcome::Unknown) => vec![state.clone()],
        (Op::ChangePassword(old, new), Outcome::Ok) => {
            if state.as_ref() == Some(old) {
                vec![Some(new.clone())]
            } else {
                vec![]
            }
        }
        (Op::ChangePassword(old, _), Outcome::Rejected) => {
            if state.as_ref() != Some(old) {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Op::ChangePassword(old, new), Outcome::Unknown) => {
            if state.as_ref() == Some(old) {
                vec![state.clone(), Some(new.clone())]
            } else {
                vec![state.clone()]
            }
        }
    }
}

struct Search<'a> {
    events: &'a [Event],
    done: Vec<bool>,
    seen: HashSet<(Vec<bool>, State)>,
    budget: u64,
}

impl Search<'_> {
    fn run(&mut self, state: State) -> Result<bool, &'static str> {
        if self.budget == 0 {
            return Err("search budget exhausted");
        }
        self.budget -= 1;
        // Done when every acknowledged/refused operation is placed.
        if self
            .events
            .iter()
            .zip(&self.done)
            .all(|(e, d)| *d || e.outcome == Outcome::Unknown)
        {
            return Ok(true);
        }
        let horizon = self
            .events
            .iter()
            .zip(&self.done)
            .filter(|(_, d)| !**d)
            .map(|(e, _)| e.complete_us)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.events.len() {
            if self.done[i] || self.events[i].invoke_us > horizon {
                continue;
            }
            let e = &self.events[i];
            for next in step(&state, &e.op, e.outcome) {
                self.done[i] = true;
                if self.seen.insert((self.done.clone(), next.clone())) && self.run(next)? {
                    return Ok(true);
                }
                self.done[i] = false;
            }
        }
        Ok(false)
    }
}

/// Checks every key's history; returns the keys that are not linearizable.
pub fn check(events: &[Event]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(&e.key).or_default().push(e.clone());
    }
    for (key, mut evs) in by_key {
        evs.sort_by_key(|e| e.invoke_us);
        let mut s = Search {
            events: &evs,
            done: vec![false; evs.len()],
            seen: HashSet::new(),
            budget: 5_000_000,
        };
        match s.run(None) {
            Ok(true) => {}
            Ok(false) => return Err(format!("history of {key:?} is not linearizable: {evs:#?}")),
            Err(why) => return Err(format!("history of {key:?}: {why}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, outcome: Outcome, invoke_us: u64, complete_us: u64) -> Event {
        Event {
            key: "k".into(),
            op,
            outcome,
            invoke_us,
            complete_us,
        }
    }

    #[test]
    fn the_checker_accepts_good_and_rejects_bad_histories() {
        use Op::*;
        use Outcome::*;
        let p = |s: &str| s.to_string();
        // Sequential and fine.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 1),
                ev(Login(p("a")), Ok, 2, 3),
                ev(ChangePassword(p("a"), p("b")), Ok, 4, 5),
                ev(Login(p("a")), Rejected, 6, 7),
                ev(Login(p("b")), Ok, 8, 9),
            ])
            .is_ok()
        );
        // Two acknowledged registrations of one name.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 1),
                ev(Register(p("b")), Ok, 2, 3)
            ])
            .is_err()
        );
        // A stale read: the old password works after the change completed.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 1),
                ev(ChangePassword(p("a"), p("b")), Ok, 2, 3),
                ev(Login(p("a")), Ok, 4, 5),
            ])
            .is_err()
        );
        // A lost write: an acknowledged change that later reads do not see.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 1),
                ev(ChangePassword(p("a"), p("b")), Ok, 2, 3),
                ev(Login(p("b")), Rejected, 4, 5),
            ])
            .is_err()
        );
        // Concurrent operations may take effect in either order.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 10),
                ev(Login(p("a")), Rejected, 1, 2),
                ev(Login(p("a")), Ok, 3, 11),
            ])
            .is_ok()
        );
        // An unknown change may have happened.
        assert!(
            check(&[
                ev(Register(p("a")), Ok, 0, 1),
                ev(ChangePassword(p("a"), p("b")), Unknown, 2, u64::MAX),
                ev(Login(p("b")), Ok, 5, 6),
            ])
            .is_ok()
        );
    }
}
