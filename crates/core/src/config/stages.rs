//! The stage map of `.codemill/pipeline.toml` (which agent, provider and model each stage uses)
//! and its resolution against codemill.toml.

use serde::{Deserialize, Serialize};

use super::agents::incompatible;
use super::{Backend, Config, ConfigError, ProviderConfig, RepoPolicy};

/// Which agent, provider and model one stage uses; every field falls back to `[stages.default]`,
/// then to the `[agent]` table of codemill.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageAgent {
    #[serde(default)]
    pub backend: Option<Backend>,
    /// A provider NAME from codemill.toml; a repository cannot define endpoints or keys.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// The stage map of `.codemill/pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageMap {
    #[serde(default)]
    pub default: Option<StageAgent>,
    #[serde(default)]
    pub research: Option<StageAgent>,
    #[serde(default)]
    pub plan: Option<StageAgent>,
    #[serde(default)]
    pub implement: Option<StageAgent>,
    #[serde(default)]
    pub review: Option<StageAgent>,
    #[serde(default)]
    pub triage: Option<StageAgent>,
    #[serde(default)]
    pub readiness: Option<StageAgent>,
}

/// The agent one stage runs with, resolved and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedAgent {
    pub backend: Backend,
    pub provider: ProviderConfig,
    pub model: String,
}

impl Config {
    /// Resolve the agent of `stage` (fix rounds use implement's: they resume its session).
    pub fn agent_for(
        &self,
        policy: Option<&RepoPolicy>,
        policy_file: &str,
        stage: crate::pipeline::AgentStage,
    ) -> Result<ResolvedAgent, ConfigError> {
        use crate::pipeline::AgentStage;
        let map = policy.map(|p| &p.stages);
        let (key, specific) = match stage {
            AgentStage::Research => ("research", map.and_then(|m| m.research.as_ref())),
            AgentStage::Plan => ("plan", map.and_then(|m| m.plan.as_ref())),
            AgentStage::Implement | AgentStage::Fix => {
                ("implement", map.and_then(|m| m.implement.as_ref()))
            }
            AgentStage::Review => ("review", map.and_then(|m| m.review.as_ref())),
            AgentStage::Triage => ("triage", map.and_then(|m| m.triage.as_ref())),
            AgentStage::Readiness => ("readiness", map.and_then(|m| m.readiness.as_ref())),
        };
        let default = map.and_then(|m| m.default.as_ref());
        let pick = |f: fn(&StageAgent) -> Option<&String>| {
            specific
                .and_then(f)
                .or_else(|| default.and_then(f))
                .cloned()
        };
        let backend = specific
            .and_then(|s| s.backend)
            .or_else(|| default.and_then(|d| d.backend))
            .unwrap_or(self.agent.backend);
        let provider_name =
            pick(|s| s.provider.as_ref()).unwrap_or_else(|| self.agent.provider.clone());
        let model = pick(|s| s.model.as_ref()).unwrap_or_else(|| self.agent.model.clone());
        let Some(provider) = self.providers.get(&provider_name).cloned() else {
            return Err(ConfigError::at(
                policy_file,
                &format!("stages.{key}.provider"),
                format!(
                    "no provider named {provider_name:?} in {}; expected one of: {}",
                    self.file.display(),
                    self.providers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if !backend.speaks().contains(&provider.api) {
            return Err(ConfigError::at(
                policy_file,
                &format!("stages.{key}"),
                incompatible(backend, &provider),
            ));
        }
        Ok(ResolvedAgent {
            backend,
            provider,
            model,
        })
    }
}
