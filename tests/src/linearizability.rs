//! A linearizability checker for histories of one register (Wing & Gong's search with
//! Lowe's memoization, as Porcupine does it): reads, writes and check-and-set, each with the
//! time it was invoked and the time it returned. Keys are independent registers, so a history
//! is checked per key.
//!
//! An operation whose outcome is unknown (timed out, connection lost) may have taken effect at
//! any time after its invocation, or never: it returns at "infinity", and a write or CAS of
//! unknown outcome may also be left out.

use std::collections::HashSet;

/// What a client did to the register, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read that returned this value (`None`: the key did not exist).
    Read(Option<String>),
    Write(String),
    /// Check-and-set from `expected` to `new`, and whether it succeeded.
    Cas {
        expected: String,
        new: String,
        ok: bool,
    },
}

/// One operation of the history. `ret` is None when the outcome is unknown.
#[derive(Clone, Debug)]
pub struct Event {
    pub client: usize,
    pub op: Op,
    pub call: u64,
    pub ret: Option<u64>,
}

/// Whether `op` can take effect on `state`, and the state after it.
fn step(state: &Option<String>, op: &Op, known: bool) -> Option<Option<String>> {
    match op {
        Op::Read(v) => (v == state).then(|| state.clone()),
        Op::Write(v) => Some(Some(v.clone())),
        // An unknown CAS is checked as a success: its failure changes nothing, which leaving it
        // out covers.
        Op::Cas { expected, new, ok } if *ok || !known => {
            (state.as_deref() == Some(expected.as_str())).then(|| Some(new.clone()))
        }
        Op::Cas { expected, .. } => (state.as_deref() != Some(expected.as_str())).then(|| state.clone()),
    }
}

/// The outcome of a check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable: the longest prefix that could be linearized, as indexes into the events.
    Violation {
        longest: Vec<usize>,
    },
    /// The search hit its step budget (huge histories); nothing is claimed.
    Unknown,
}

/// Checks one register's history from the initial value `init`.
pub fn check(events: &[Event], init: Option<String>, budget: u64) -> Verdict {
    // Unknown reads tell nothing: drop them. Unknown writes may or may not have happened.
    let ops: Vec<&Event> = events.iter().filter(|e| e.ret.is_some() || !matches!(e.op, Op::Read(_))).collect();
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Entries: (time, is_return, op index); calls before returns at equal times (conservative:
    // overlapping).
    let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in ops.iter().enumerate() {
        entries.push((e.call, false, i));
        entries.push((e.ret.unwrap_or(u64::MAX), true, i));
    }
    entries.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    // A doubly linked list over the entries.
    let len = entries.len();
    let mut next: Vec<usize> = (1..=len).collect();
    let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
    let head = len; // sentinel index
    next.push(0);
    prev.push(usize::MAX);
    prev[0] = head;
    let mut ret_pos = vec![0usize; n];
    let mut call_pos = vec![0usize; n];
    for (pos, &(_, is_ret, i)) in entries.iter().enumerate() {
        if is_ret {
            ret_pos[i] = pos;
        } else {
            call_pos[i] = pos;
        }
    }
    let unlink = |pos: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[pos], next[pos]);
        next[p] = nx;
        if nx < len {
            prev[nx] = p;
        }
    };
    let relink = |pos: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[pos], next[pos]);
        next[p] = pos;
        if nx < len {
            prev[nx] = pos;
        }
    };
    // Which operations the current path has linearized, as a bitset (the cache's key with the
    // state: a configuration seen once need not be explored again).
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let is_set = |b: &[u64], i: usize| b[i / 64] & (1 << (i % 64)) != 0;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut state = init;
    // (op index, state before it)
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut cursor = next[head];
    let mut steps = 0u64;
    while next[head] < len {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        if cursor >= len {
            // Only unknown operations are left (their returns are at infinity): they may be
            // left out.
            if (0..n).all(|i| is_set(&linearized, i) || ops[i].ret.is_none()) {
                return Verdict::Linearizable;
            }
            cursor = len; // fall through to backtracking below
        }
        let entry = if cursor < len { Some(entries[cursor]) } else { None };
        match entry {
            Some((_, false, i)) => {
                let e = ops[i];
                if let Some(after) = step(&state, &e.op, e.ret.is_some()) {
                    linearized[i / 64] |= 1 << (i % 64);
                    if cache.insert((linearized.clone(), after.clone())) {
                        stack.push((i, state.clone()));
                        state = after;
                        unlink(call_pos[i], &mut next, &mut prev);
                        unlink(ret_pos[i], &mut next, &mut prev);
                        if stack.len() > longest.len() {
                            longest = stack.iter().map(|(i, _)| *i).collect();
                        }
                        cursor = next[head];
                        continue;
                    }
                    linearized[i / 64] &= !(1 << (i % 64));
                }
                cursor = next[cursor];
            }
            // The return of an operation of unknown outcome: it is at "infinity", after every
            // known return, so every known operation is linearized; the unknown ones left may
            // never have taken effect.
            Some((_, true, i)) if ops[i].ret.is_none() => return Verdict::Linearizable,
            _ => {
                // A return reached (or the end): undo the last choice and try the next one.
                let Some((i, before)) = stack.pop() else {
                    return Verdict::Violation { longest };
                };
                linearized[i / 64] &= !(1 << (i % 64));
                state = before;
                relink(ret_pos[i], &mut next, &mut prev);
                relink(call_pos[i], &mut next, &mut prev);
                cursor = next[call_pos[i]];
            }
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(client: usize, op: Op, call: u64, ret: Option<u64>) -> Event {
        Event { client, op, call, ret }
    }
    fn r(v: &str) -> Op {
        Op::Read(Some(v.into()))
    }
    fn w(v: &str) -> Op {
        Op::Write(v.into())
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        // w1 then r1: fine.
        assert_eq!(
            check(&[ev(0, w("1"), 0, Some(1)), ev(1, r("1"), 2, Some(3))], None, 1 << 20),
            Verdict::Linearizable
        );
        // A read of the old value after the write returned: stale.
        let stale = [ev(0, w("1"), 0, Some(1)), ev(1, Op::Read(None), 2, Some(3))];
        assert!(matches!(check(&stale, None, 1 << 20), Verdict::Violation { .. }));
        // Overlapping: either order.
        let overlap = [ev(0, w("1"), 0, Some(10)), ev(1, Op::Read(None), 1, Some(2)), ev(2, r("1"), 3, Some(4))];
        assert_eq!(check(&overlap, None, 1 << 20), Verdict::Linearizable);
        // A read that goes back: r1 then r0 while w1 was done before both.
        let back = [
            ev(0, w("0"), 0, Some(1)),
            ev(0, w("1"), 2, Some(5)),
            ev(1, r("1"), 3, Some(4)),
            ev(2, r("0"), 6, Some(7)),
        ];
        assert!(matches!(check(&back, None, 1 << 20), Verdict::Violation { .. }));
    }

    #[test]
    fn cas_and_unknown_outcomes() {
        let cas = |e: &str, n: &str, ok| Op::Cas { expected: e.into(), new: n.into(), ok };
        // Two CAS from the same value cannot both succeed.
        let both =
            [ev(0, w("a"), 0, Some(1)), ev(1, cas("a", "b", true), 2, Some(5)), ev(2, cas("a", "c", true), 3, Some(6))];
        assert!(matches!(check(&both, None, 1 << 20), Verdict::Violation { .. }));
        // A failed CAS needs another value in place.
        let failed = [ev(0, w("a"), 0, Some(1)), ev(1, cas("a", "b", false), 2, Some(3))];
        assert!(matches!(check(&failed, None, 1 << 20), Verdict::Violation { .. }));
        // An unknown write may have happened (a later read sees it)...
        let seen = [ev(0, w("x"), 0, None), ev(1, r("x"), 5, Some(6))];
        assert_eq!(check(&seen, None, 1 << 20), Verdict::Linearizable);
        // ...or not.
        let unseen = [ev(0, w("x"), 0, None), ev(1, Op::Read(None), 5, Some(6))];
        assert_eq!(check(&unseen, None, 1 << 20), Verdict::Linearizable);
        // An unknown CAS that could never apply (its expected value was never there) simply
        // did not happen.
        let never = [ev(0, w("a"), 0, Some(1)), ev(1, cas("z", "b", true), 2, None), ev(2, r("a"), 3, Some(4))];
        assert_eq!(check(&never, None, 1 << 20), Verdict::Linearizable);
        // But it cannot have happened before it was invoked.
        let early = [ev(1, r("x"), 0, Some(1)), ev(0, w("x"), 5, None)];
        assert!(matches!(check(&early, None, 1 << 20), Verdict::Violation { .. }));
    }
}
