//! Token usage and money: summing usage and pricing it from a per-model price table.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Dollars summed: 0 when there is nothing to sum. (Rust's float sum starts at -0.0, which
/// prints as `$-0.0000` and serializes as `-0.0`.)
pub fn sum_usd(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().sum::<f64>() + 0.0
}

/// Tokens one or more model calls used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.cache_read_tokens += rhs.cache_read_tokens;
        self.cache_write_tokens += rhs.cache_write_tokens;
    }
}

/// Dollars per million tokens for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default)]
    pub cache_read_per_mtok: f64,
    #[serde(default)]
    pub cache_write_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok
            + usage.output_tokens as f64 * self.output_per_mtok
            + usage.cache_read_tokens as f64 * self.cache_read_per_mtok
            + usage.cache_write_tokens as f64 * self.cache_write_per_mtok)
            / 1_000_000.0
    }
}

/// Model name → price. Unknown models cost nothing but are reported as unpriced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PriceTable(pub BTreeMap<String, Price>);

impl PriceTable {
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.0.get(model)
    }

    /// Cost of `usage` on `model`, preferring what the agent itself reported.
    pub fn cost(&self, model: &str, usage: &Usage, reported: Option<f64>) -> f64 {
        match reported {
            Some(c) => c,
            None => self.price(model).map(|p| p.cost(usage)).unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_spent_is_zero_not_minus_zero() {
        let none = sum_usd(std::iter::empty());
        assert!(none.is_sign_positive(), "{none}");
        assert_eq!(format!("{none:.4}"), "0.0000");
        assert_eq!(serde_json::json!(none).to_string(), "0.0");
        assert_eq!(sum_usd([0.25, 0.5]), 0.75);
    }

    #[test]
    fn prices_tokens_per_million() {
        let p = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cache_read_per_mtok: 0.0,
            cache_write_per_mtok: 0.0,
        };
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            ..Usage::default()
        };
        assert!((p.cost(&u) - 4.5).abs() < 1e-9);
    }

    #[test]
    fn reported_cost_wins() {
        let t = PriceTable::default();
        assert_eq!(t.cost("x", &Usage::default(), Some(0.25)), 0.25);
        assert_eq!(t.cost("x", &Usage::default(), None), 0.0);
    }
}
