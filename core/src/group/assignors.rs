//! The server-side assignors of KIP-848's consumer groups, `uniform` (Kafka's default)
//! and `range`. Both are pure functions of the members' subscriptions, the topics'
//! partition counts and, for `uniform`, the previous target assignment, so that the
//! same group gives the same answer on every coordinator.

use std::collections::{BTreeMap, BTreeSet};

use super::consumer::{Assignment, TopicId};
use crate::sim::{planted, Bug};

/// Assignor names, the first being the default (`group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub subscribed: BTreeSet<TopicId>,
    /// The member's previous target assignment: `uniform` keeps what it can of it.
    pub previous: Assignment,
}

/// Runs the assignor `name` (one of [`ASSIGNORS`]).
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Every partition of every topic some member subscribes to goes to exactly one member
/// subscribed to its topic; the counts per member differ by at most one where the
/// subscriptions allow it; a member keeps the partitions of its previous assignment
/// while that stays within balance (KIP-848's "uniform" assignor, sticky).
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let partitions: Vec<(TopicId, i32)> = topics
        .iter()
        .filter(|(t, _)| members.values().any(|m| m.subscribed.contains(*t)))
        .flat_map(|(t, n)| {
            let n = if planted(Bug::AssignorSkipsPartition) {
                *n - 1
            } else {
                *n
            };
            (0..n).map(move |p| (*t, p))
        })
        .collect();
    let cap = partitions.len().div_ceil(members.len());
    let mut owner: BTreeMap<(TopicId, i32), String> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    // Sticky: keep previous partitions that are still valid, up to the cap.
    for (id, spec) in members {
        for (t, ps) in &spec.previous {
            let Some(n) = topics.get(t) else { continue };
            if !spec.subscribed.contains(t) {
                continue;
            }
            for p in ps {
                let c = count.get_mut(id.as_str()).expect("listed");
                if *p < *n && *c < cap && !owner.contains_key(&(*t, *p)) {
                    owner.insert((*t, *p), id.clone());
                    *c += 1;
                }
            }
        }
    }
    // The rest to the subscribed member with the fewest.
    for tp in &partitions {
        if owner.contains_key(tp) {
            continue;
        }
        let best = members
            .iter()
            .filter(|(_, s)| s.subscribed.contains(&tp.0))
            .min_by_key(|(id, _)| (count[id.as_str()], id.as_str()))
            .map(|(id, _)| id.clone());
        if let Some(id) = best {
            *count.get_mut(id.as_str()).expect("listed") += 1;
            owner.insert(*tp, id);
        }
    }
    // Balance: move a partition from a member with two or more above another that
    // may take it, until no such move is left (each move lowers the spread).
    for _ in 0..partitions.len() * members.len() {
        let mut moved = false;
        'search: for tp in &partitions {
            let from = owner[tp].clone();
            let from_count = count[from.as_str()];
            for (to, spec) in members {
                if spec.subscribed.contains(&tp.0) && count[to.as_str()] + 1 < from_count {
                    *count.get_mut(from.as_str()).expect("listed") -= 1;
                    *count.get_mut(to.as_str()).expect("listed") += 1;
                    owner.insert(*tp, to.clone());
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    for ((t, p), id) in owner {
        out.get_mut(&id)
            .expect("listed")
            .entry(t)
            .or_default()
            .insert(p);
    }
    out
}

/// Per topic, its members in member-id order take contiguous ranges, the first
/// `partitions % members` one partition more (Kafka's range assignor).
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (t, n) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.subscribed.contains(t))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let (each, extra) = (
            *n as usize / subscribers.len(),
            *n as usize % subscribers.len(),
        );
        let mut next = 0i32;
        for (i, id) in subscribers.into_iter().enumerate() {
            let take = each + usize::from(i < extra);
            let ps: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            if !ps.is_empty() {
                out.get_mut(id).expect("listed").insert(*t, ps);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(topics: &[u8], previous: &[(u8, &[i32])]) -> MemberSpec {
        MemberSpec {
            subscribed: topics.iter().map(|t| [*t; 16]).collect(),
            previous: previous
                .iter()
                .map(|(t, ps)| ([*t; 16], ps.iter().copied().collect()))
                .collect(),
        }
    }

    fn counts(a: &BTreeMap<String, Assignment>) -> Vec<usize> {
        a.values()
            .map(|x| x.values().map(BTreeSet::len).sum())
            .collect()
    }

    /// Every partition owned exactly once.
    fn owned_once(a: &BTreeMap<String, Assignment>, topics: &BTreeMap<TopicId, i32>) {
        let mut seen = BTreeSet::new();
        for x in a.values() {
            for (t, ps) in x {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition assigned twice");
                }
            }
        }
        let all: usize = topics.values().map(|n| *n as usize).sum();
        assert_eq!(seen.len(), all);
    }

    #[test]
    fn uniform_balances_within_one_and_owns_every_partition() {
        let topics = BTreeMap::from([([1; 16], 7), ([2; 16], 3)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[1, 2], &[])),
            ("b".to_string(), spec(&[1, 2], &[])),
            ("c".to_string(), spec(&[1, 2], &[])),
        ]);
        let a = uniform(&members, &topics);
        owned_once(&a, &topics);
        let c = counts(&a);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    #[test]
    fn uniform_keeps_previous_partitions_when_a_member_joins() {
        // KIP-848: the assignor is sticky, so a join moves only what balance needs.
        let topics = BTreeMap::from([([1; 16], 6)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[1], &[(1, &[0, 1, 2])])),
            ("b".to_string(), spec(&[1], &[(1, &[3, 4, 5])])),
            ("c".to_string(), spec(&[1], &[])),
        ]);
        let a = uniform(&members, &topics);
        owned_once(&a, &topics);
        assert_eq!(counts(&a), vec![2, 2, 2]);
        let kept_a = a["a"][&[1; 16]]
            .intersection(&BTreeSet::from([0, 1, 2]))
            .count();
        let kept_b = a["b"][&[1; 16]]
            .intersection(&BTreeSet::from([3, 4, 5]))
            .count();
        assert_eq!((kept_a, kept_b), (2, 2));
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let topics = BTreeMap::from([([1; 16], 4), ([2; 16], 2)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[1], &[])),
            ("b".to_string(), spec(&[1, 2], &[])),
        ]);
        let a = uniform(&members, &topics);
        owned_once(&a, &topics);
        assert!(
            !a["a"].contains_key(&[2; 16]),
            "a is not subscribed to topic 2"
        );
        assert_eq!(counts(&a), vec![3, 3]);
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_one_more() {
        let topics = BTreeMap::from([([1; 16], 5)]);
        let members = BTreeMap::from([
            ("a".to_string(), spec(&[1], &[])),
            ("b".to_string(), spec(&[1], &[])),
        ]);
        let a = range(&members, &topics);
        assert_eq!(a["a"][&[1; 16]], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["b"][&[1; 16]], BTreeSet::from([3, 4]));
    }
}
