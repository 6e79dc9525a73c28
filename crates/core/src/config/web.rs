//! `[web.oidc]` of `codemill.toml`: single sign-on to the dashboard through an OpenID Connect
//! provider, who may sign in (e-mail domains, groups) and with which role (mapped from a claim).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The dashboard's roles, least first.
pub const ROLES: [&str; 3] = ["viewer", "approver", "admin"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Sign-in through an OpenID Connect provider, besides local users.
    pub oidc: Option<OidcConfig>,
}

/// An OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Shown on the sign-in page: "Sign in with <provider>".
    pub provider: String,
    /// The issuer URL; its `/.well-known/openid-configuration` is read at the first sign-in.
    pub issuer: String,
    pub client_id: String,
    /// The NAME of the environment variable holding the client secret.
    pub client_secret_env: String,
    /// People whose verified e-mail is in one of these domains may sign in.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// People in one of these groups (claim `role_claim`) may sign in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The ID token claim (a string or a list of strings) that roles and groups are read from.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// A value of `role_claim` to a role; the highest role any value maps to wins.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// The role of an allowed person no mapping names.
    #[serde(default = "default_role")]
    pub default_role: String,
}

fn default_role_claim() -> String {
    "groups".into()
}

fn default_role() -> String {
    "viewer".into()
}

impl WebConfig {
    pub(super) fn check(&self, file: &str) -> Result<(), ConfigError> {
        let Some(o) = &self.oidc else { return Ok(()) };
        for (key, value) in [
            ("web.oidc.provider", &o.provider),
            ("web.oidc.client_id", &o.client_id),
            ("web.oidc.client_secret_env", &o.client_secret_env),
            ("web.oidc.role_claim", &o.role_claim),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::at(file, key, "is empty"));
            }
        }
        let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
        if !o.issuer.starts_with("https://")
            && !local.iter().any(|l| {
                o.issuer
                    .strip_prefix(l)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            })
        {
            return Err(ConfigError::at(
                file,
                "web.oidc.issuer",
                format!(
                    "{:?} must be an https:// URL (plain http only on this machine)",
                    o.issuer
                ),
            ));
        }
        if o.allowed_domains.is_empty() && o.allowed_groups.is_empty() {
            return Err(ConfigError::at(
                file,
                "web.oidc",
                "set allowed_domains or allowed_groups: otherwise anyone the provider knows could \
                 sign in",
            ));
        }
        for (value, role) in o
            .roles
            .iter()
            .map(|(k, v)| (format!("web.oidc.roles.{k}"), v))
            .chain([("web.oidc.default_role".to_string(), &o.default_role)])
        {
            if !ROLES.contains(&role.as_str()) {
                return Err(ConfigError::at(
                    file,
                    &value,
                    format!("{role:?} is not a role: use viewer, approver or admin"),
                ));
            }
        }
        Ok(())
    }
}

impl OidcConfig {
    /// Whether a person with `email` (verified) and the claim's `values` may sign in, and with
    /// which role: the highest any value maps to, else the default.
    pub fn admit(&self, email: Option<&str>, values: &[String]) -> Result<&str, String> {
        let domain_ok = email
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, d)| {
                self.allowed_domains
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(d))
            });
        let group_ok = values.iter().any(|v| self.allowed_groups.contains(v));
        if !domain_ok && !group_ok {
            return Err(match email {
                Some(e) => format!("{e} is not allowed to sign in here"),
                None => "the provider gave no verified e-mail and no allowed group".into(),
            });
        }
        let rank = |r: &str| ROLES.iter().position(|x| *x == r).unwrap_or(0);
        Ok(values
            .iter()
            .filter_map(|v| self.roles.get(v))
            .max_by_key(|r| rank(r))
            .map_or(self.default_role.as_str(), String::as_str))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn oidc() -> OidcConfig {
        OidcConfig {
            provider: "Acme SSO".into(),
            issuer: "https://sso.acme.example".into(),
            client_id: "codemill".into(),
            client_secret_env: "OIDC_SECRET".into(),
            allowed_domains: vec!["acme.example".into()],
            allowed_groups: vec!["contractors".into()],
            role_claim: "groups".into(),
            roles: [
                ("eng-leads".to_string(), "admin".to_string()),
                ("eng".to_string(), "approver".to_string()),
            ]
            .into(),
            default_role: "viewer".into(),
        }
    }

    #[test]
    fn who_may_sign_in_and_as_what() {
        let o = oidc();
        assert_eq!(o.admit(Some("amy@acme.example"), &[]), Ok("viewer"));
        assert_eq!(
            o.admit(Some("amy@ACME.example"), &["eng".into()]),
            Ok("approver")
        );
        assert_eq!(
            o.admit(
                Some("amy@acme.example"),
                &["eng".into(), "eng-leads".into()]
            ),
            Ok("admin")
        );
        assert_eq!(o.admit(None, &["contractors".into()]), Ok("viewer"));
        assert!(o.admit(Some("eve@evil.example"), &["eng".into()]).is_err());
        assert!(o.admit(Some("eve@acme.example.evil"), &[]).is_err());
        assert!(o.admit(None, &[]).is_err());
    }

    #[test]
    fn bad_settings_are_refused_with_their_key() {
        let check = |o: OidcConfig| WebConfig { oidc: Some(o) }.check("codemill.toml");
        assert!(check(oidc()).is_ok());
        let e = check(OidcConfig {
            issuer: "http://sso.acme.example".into(),
            ..oidc()
        })
        .unwrap_err();
        assert!(e.to_string().contains("web.oidc.issuer"), "{e}");
        assert!(
            check(OidcConfig {
                issuer: "http://127.0.0.1:4000".into(),
                ..oidc()
            })
            .is_ok()
        );
        let e = check(OidcConfig {
            allowed_domains: vec![],
            allowed_groups: vec![],
            ..oidc()
        })
        .unwrap_err();
        assert!(e.to_string().contains("allowed_domains"), "{e}");
        let e = check(OidcConfig {
            roles: [("eng".to_string(), "owner".to_string())].into(),
            ..oidc()
        })
        .unwrap_err();
        assert!(e.to_string().contains("web.oidc.roles.eng"), "{e}");
    }
}
