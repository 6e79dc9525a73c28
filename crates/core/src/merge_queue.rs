//! The merge queue's search for the entry that broke a batch: candidates are prefixes of the
//! batch stacked on the target branch (prefix `k` holds its first `k` entries); the whole batch
//! failed, the target alone is taken as green, and a binary search over prefix lengths finds the
//! first red one. Pure: the runner builds and tests the candidates it names.

/// A bisection over prefixes `1..=n` of a batch whose full candidate (prefix `n`) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bisect {
    /// The longest prefix known green (0: the target branch alone).
    green: usize,
    /// The shortest prefix known red.
    red: usize,
}

impl Bisect {
    /// After the candidate of all `n` entries failed. `n` is at least 1.
    pub fn new(n: usize) -> Bisect {
        Bisect {
            green: 0,
            red: n.max(1),
        }
    }

    /// The prefix to test next, or `None` once the culprit is known.
    pub fn next(&self) -> Option<usize> {
        (self.red - self.green > 1).then(|| self.green + (self.red - self.green) / 2)
    }

    /// Record the result of testing `prefix`.
    pub fn record(&mut self, prefix: usize, passed: bool) {
        if passed {
            self.green = self.green.max(prefix);
        } else {
            self.red = self.red.min(prefix);
        }
    }

    /// The longest prefix known green: these entries can land together.
    pub fn green(&self) -> usize {
        self.green
    }

    /// The 0-based index of the entry that turned the candidate red (the last one of the
    /// shortest red prefix).
    pub fn culprit(&self) -> usize {
        self.red - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a bisection over `n` entries where entries in `bad` break any candidate holding
    /// them; returns (culprit, green prefix, tests run).
    fn run(n: usize, bad: &[usize]) -> (usize, usize, usize) {
        let mut b = Bisect::new(n);
        let mut tests = 0;
        while let Some(k) = b.next() {
            tests += 1;
            b.record(k, !bad.iter().any(|&i| i < k));
        }
        (b.culprit(), b.green(), tests)
    }

    #[test]
    fn finds_the_first_bad_entry_in_log_tests() {
        assert_eq!(run(4, &[2]), (2, 2, 2));
        assert_eq!(run(4, &[0]), (0, 0, 2));
        assert_eq!(run(4, &[3]), (3, 3, 2));
        assert_eq!(run(8, &[5]), (5, 5, 3));
        // Two bad entries: the first is found; the second waits for its own candidate.
        assert_eq!(run(8, &[2, 6]), (2, 2, 3));
        assert_eq!(run(1, &[0]), (0, 0, 0));
        assert_eq!(run(2, &[1]), (1, 1, 1));
    }

    #[test]
    fn every_position_of_a_single_bad_entry_is_found() {
        for n in 1..=16 {
            for bad in 0..n {
                let (culprit, green, tests) = run(n, &[bad]);
                assert_eq!((culprit, green), (bad, bad), "n={n} bad={bad}");
                assert!(tests <= (n as f64).log2().ceil() as usize, "n={n}: {tests}");
            }
        }
    }
}
