//! Queue arithmetic for [`QueuePlan`](crate::QueuePlan)s.

/// Every queue of a device with `n_queues` queues: `0..n_queues`.
pub fn all_queues(n_queues: u32) -> Vec<u32> {
    (0..n_queues).collect()
}

/// The share of `n_queues` queues that consumer `index` of `n_pods` gets:
/// contiguous, balanced slices (sizes differ by at most one, the larger ones
/// first). When there are fewer queues than consumers, consumer `index` gets
/// queue `index % n_queues`, so everyone has one. Empty when `n_queues` or
/// `n_pods` is 0 or `index >= n_pods`.
///
/// ```
/// use afxdp_policy_sdk::queues::spread_queues;
/// assert_eq!(spread_queues(8, 3, 0), vec![0, 1, 2]);
/// assert_eq!(spread_queues(8, 3, 1), vec![3, 4, 5]);
/// assert_eq!(spread_queues(8, 3, 2), vec![6, 7]);
/// assert_eq!(spread_queues(2, 3, 2), vec![0]);
/// ```
pub fn spread_queues(n_queues: u32, n_pods: u32, index: u32) -> Vec<u32> {
    if n_queues == 0 || n_pods == 0 || index >= n_pods {
        return Vec::new();
    }
    if n_queues < n_pods {
        return vec![index % n_queues];
    }
    let base = n_queues / n_pods;
    let extra = n_queues % n_pods;
    let start = index * base + index.min(extra);
    let len = base + u32::from(index < extra);
    (start..start + len).collect()
}

/// The `i`-th pick going round-robin over `queues` (`None` when empty).
pub fn round_robin(queues: &[u32], i: usize) -> Option<u32> {
    (!queues.is_empty()).then(|| queues[i % queues.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all() {
        assert_eq!(all_queues(0), Vec::<u32>::new());
        assert_eq!(all_queues(3), vec![0, 1, 2]);
    }

    #[test]
    fn spread_table() {
        let cases: &[(u32, u32, u32, &[u32])] = &[
            (8, 2, 0, &[0, 1, 2, 3]),
            (8, 2, 1, &[4, 5, 6, 7]),
            (7, 3, 0, &[0, 1, 2]),
            (7, 3, 1, &[3, 4]),
            (7, 3, 2, &[5, 6]),
            (4, 4, 3, &[3]),
            (1, 1, 0, &[0]),
            (2, 5, 4, &[0]),
            (2, 5, 3, &[1]),
            (0, 2, 0, &[]),
            (4, 0, 0, &[]),
            (4, 2, 2, &[]),
        ];
        for &(n, p, i, want) in cases {
            assert_eq!(spread_queues(n, p, i), want, "spread_queues({n}, {p}, {i})");
        }
    }

    #[test]
    fn spread_partitions_exactly() {
        for n in 1..=17u32 {
            for p in 1..=n {
                let mut seen: Vec<u32> = (0..p).flat_map(|i| spread_queues(n, p, i)).collect();
                let sizes: Vec<usize> = (0..p).map(|i| spread_queues(n, p, i).len()).collect();
                seen.sort_unstable();
                assert_eq!(seen, all_queues(n), "n={n} p={p}");
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "n={n} p={p}");
            }
        }
    }

    #[test]
    fn round_robin_wraps() {
        assert_eq!(round_robin(&[], 3), None);
        let q = [4, 5, 6];
        let picks: Vec<_> = (0..5).filter_map(|i| round_robin(&q, i)).collect();
        assert_eq!(picks, vec![4, 5, 6, 4, 5]);
    }
}
